package lab

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"shoal", true},
		{"t1ab", true},
		{"abcdefgh", true},
		{"abcdefghi", false}, // link names would pass 15 bytes
		{"", false},
		{"1lab", false},
		{"Lab", false},
		{"a-b", false},
		{"a/b", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errdefs.IsInvalidParameter(err) {
			t.Errorf("ValidateName(%q) error kind %v, want InvalidParameter", tc.name, errdefs.KindOf(err))
		}
	}
}

func TestNamesFitKernelLimits(t *testing.T) {
	n := names{lab: "abcdefgh"} // the longest valid name
	for _, link := range []string{n.bridge(), n.veth(maxNodes)} {
		if len(link) > 15 {
			t.Errorf("link name %q is %d bytes, the kernel allows 15", link, len(link))
		}
	}
	if s := n.socket(NodeName(maxNodes)); len(s) >= 108 {
		t.Errorf("socket path %q too long for sun_path", s)
	}
}

func TestNaming(t *testing.T) {
	n := names{lab: "shoal"}
	got := map[string]string{
		"bridge":   n.bridge(),
		"veth":     n.veth(3),
		"netns":    n.netnsPath("node3"),
		"table":    n.nftTable(),
		"socket":   n.socket("node3"),
		"dataRoot": n.dataRoot("node3"),
		"cgroup":   n.nodeCgroup("node3"),
		"daemon":   n.daemonCgroup("node3"),
	}
	want := map[string]string{
		"bridge":   "shoal-lab0",
		"veth":     "shoal-v3",
		"netns":    "/run/netns/shoal-node3",
		"table":    "shoal-lab-shoal",
		"socket":   "/run/shoal-lab/shoal/node3/exec/shoald.sock",
		"dataRoot": "/var/lib/shoal-lab/shoal/node3",
		"cgroup":   "/shoal-lab/shoal/node3",
		"daemon":   "/shoal-lab/shoal/node3/shoald",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("names:\n got %v\nwant %v", got, want)
	}
	for _, tc := range []struct {
		link string
		veth bool
	}{{"shoal-v1", true}, {"shoal-v12", true}, {"shoal-lab0", false}, {"shoal-v", false}, {"shoalx-v1", false}, {"shoal-vx", false}} {
		if got := n.isVeth(tc.link); got != tc.veth {
			t.Errorf("isVeth(%q) = %v", tc.link, got)
		}
	}
	for _, tc := range []struct {
		entry string
		want  bool
	}{{"shoal-node1", true}, {"shoal-node12", true}, {"shoal-node0", false}, {"shoal-node01", false}, {"shoalx-node1", false}, {"shoal-nodex", false}} {
		if got := n.isNodeNetns(tc.entry); got != tc.want {
			t.Errorf("isNodeNetns(%q) = %v", tc.entry, got)
		}
	}
}

func TestPlanAddrs(t *testing.T) {
	p, err := planAddrs("10.99.0.7/24", 5, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subnet.String() != "10.99.0.0/24" || p.BridgeIP.String() != "10.99.0.1" {
		t.Errorf("subnet %s bridge %s", p.Subnet, p.BridgeIP)
	}
	var got []string
	for _, n := range p.Nodes {
		got = append(got, n.Name+"="+n.IP.String()+"/"+n.Role)
	}
	want := []string{
		"node1=10.99.0.11/manager", "node2=10.99.0.12/manager", "node3=10.99.0.13/manager",
		"node4=10.99.0.14/worker", "node5=10.99.0.15/worker",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n got %v\nwant %v", got, want)
	}
	noSwarm, err := planAddrs(DefaultSubnet, 2, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if noSwarm.Nodes[0].Role != "" {
		t.Errorf("without swarm nodes have no role, got %q", noSwarm.Nodes[0].Role)
	}

	for _, tc := range []struct {
		subnet          string
		nodes, managers int
	}{
		{"10.99.0.0/24", 0, 1},
		{"10.99.0.0/24", 201, 1},
		{"10.99.0.0/24", 3, 4},
		{"10.99.0.0/24", 3, 0},
		{"10.99.0.0/28", 5, 1}, // .15 is the broadcast address
		{"172.18.5.0/24", 3, 1},
		{"172.16.0.0/12", 3, 1},
		{"fd00::/64", 3, 1},
		{"127.0.0.0/24", 3, 1},
		{"nonsense", 3, 1},
	} {
		if _, err := planAddrs(tc.subnet, tc.nodes, tc.managers, true); !errdefs.IsInvalidParameter(err) {
			t.Errorf("planAddrs(%s, %d, %d) = %v, want InvalidParameter", tc.subnet, tc.nodes, tc.managers, err)
		}
	}
	// The biggest lab that fits a /28: .11 to .14.
	if _, err := planAddrs("10.99.0.0/28", 4, 1, true); err != nil {
		t.Errorf("4 nodes in a /28: %v", err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lab.json")
	in := &State{
		Name:        "t1",
		Created:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Subnet:      "10.99.0.0/24",
		Bridge:      "t1-lab0",
		BridgeIP:    "10.99.0.1",
		Swarm:       true,
		Registry:    "10.99.0.1:5000",
		RegistryPid: 42,
		Shoald:      "/usr/bin/shoald",
		StopTimeout: Duration(3 * time.Second),
		Nodes: []NodeInfo{{
			Name: "node1", Index: 1, IP: "10.99.0.11", Role: RoleManager,
			Args: []string{"--data-root", "/x"}, Pid: 7, State: StateRunning,
		}},
		Partitions: [][2]string{{"node3", "node1"}, {"node1", "node2"}},
	}
	if err := saveState(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	// saveState normalises pairs: each sorted, the list sorted.
	in.Partitions = [][2]string{{"node1", "node2"}, {"node1", "node3"}}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}

	if _, err := loadState(filepath.Join(dir, "missing.json")); !errdefs.IsNotFound(err) {
		t.Errorf("missing state: %v, want NotFound", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path); !errdefs.IsSystem(err) || !strings.Contains(err.Error(), "shoal lab down") {
		t.Errorf("corrupt state: %v, want System error pointing at `shoal lab down`", err)
	}
	if err := os.WriteFile(path, []byte(`{"version": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path); !errdefs.IsSystem(err) {
		t.Errorf("future state version: %v, want System error", err)
	}
}

func TestPartitionPairs(t *testing.T) {
	all := []string{"node1", "node2", "node3", "node4"}
	for _, tc := range []struct {
		nodes, from []string
		want        [][2]string
		kind        errdefs.Kind
	}{
		{nodes: []string{"node1"}, from: []string{"node2"}, want: [][2]string{{"node1", "node2"}}},
		{nodes: []string{"node2"}, from: []string{"node1"}, want: [][2]string{{"node1", "node2"}}},
		{nodes: []string{"node1"}, want: [][2]string{{"node1", "node2"}, {"node1", "node3"}, {"node1", "node4"}}},
		{nodes: []string{"node1", "node2"}, want: [][2]string{{"node1", "node3"}, {"node1", "node4"}, {"node2", "node3"}, {"node2", "node4"}}},
		{nodes: []string{"node1", "node1"}, from: []string{"node2", "node2"}, want: [][2]string{{"node1", "node2"}}},
		{nodes: nil, kind: errdefs.KindInvalidParameter},
		{nodes: []string{"node9"}, kind: errdefs.KindNotFound},
		{nodes: []string{"node1"}, from: []string{"node9"}, kind: errdefs.KindNotFound},
		{nodes: []string{"node1"}, from: []string{"node1"}, kind: errdefs.KindInvalidParameter},
		{nodes: all, kind: errdefs.KindInvalidParameter},
	} {
		got, err := partitionPairs(all, tc.nodes, tc.from)
		if errdefs.KindOf(err) != tc.kind {
			t.Errorf("partitionPairs(%v, %v) error %v, want kind %v", tc.nodes, tc.from, err, tc.kind)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("partitionPairs(%v, %v) = %v, want %v", tc.nodes, tc.from, got, tc.want)
		}
	}
	merged := mergePairs([][2]string{{"node1", "node2"}}, [][2]string{{"node2", "node1"}, {"node1", "node3"}})
	if want := [][2]string{{"node1", "node2"}, {"node1", "node3"}}; !reflect.DeepEqual(merged, want) {
		t.Errorf("mergePairs = %v, want %v", merged, want)
	}
}

func TestDropRules(t *testing.T) {
	ports := map[string]string{"node1": "t-v1", "node2": "t-v2", "node3": "t-v3"}
	rules, err := dropRules([][2]string{{"node1", "node2"}, {"node1", "node3"}}, ports)
	if err != nil {
		t.Fatal(err)
	}
	want := []dropRule{{"t-v1", "t-v2"}, {"t-v2", "t-v1"}, {"t-v1", "t-v3"}, {"t-v3", "t-v1"}}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("dropRules = %v, want %v (both directions)", rules, want)
	}
	if _, err := dropRules([][2]string{{"node1", "node9"}}, ports); !errdefs.IsNotFound(err) {
		t.Errorf("unknown node: %v, want NotFound", err)
	}

	ex := dropRule{In: "t-v1", Out: "t-v2"}.exprs()
	if len(ex) != 5 {
		t.Fatalf("rule has %d expressions, want 5", len(ex))
	}
	in, ok1 := ex[0].(*expr.Meta)
	inCmp, ok2 := ex[1].(*expr.Cmp)
	out, ok3 := ex[2].(*expr.Meta)
	outCmp, ok4 := ex[3].(*expr.Cmp)
	v, ok5 := ex[4].(*expr.Verdict)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		t.Fatalf("rule shape %#v", ex)
	}
	if in.Key != expr.MetaKeyIIFNAME || out.Key != expr.MetaKeyOIFNAME || v.Kind != expr.VerdictDrop {
		t.Errorf("rule is not iifname/oifname/drop: %#v", ex)
	}
	if string(inCmp.Data) != "t-v1"+strings.Repeat("\x00", 12) || string(outCmp.Data) != "t-v2"+strings.Repeat("\x00", 12) {
		t.Errorf("interface names not padded to IFNAMSIZ: %q %q", inCmp.Data, outCmp.Data)
	}
	if inCmp.Register != in.Register || outCmp.Register != out.Register {
		t.Errorf("compare registers do not match the loads")
	}
}

const sampleMountinfo = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
42 31 0:39 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
100 27 0:4 net:[4026532500] /run/netns/t1-node1 rw - nsfs nsfs rw
101 27 0:50 / /var/lib/shoal-lab/t1/node1/overlay/abc/merged rw - overlay overlay rw,lowerdir=/a
102 27 0:4 net:[4026532501] /run/shoal-lab/t1/node1/exec/netns/c\0401 rw - nsfs nsfs rw
103 27 0:51 / /run/shoal-lab/t1x/node1 rw - tmpfs tmpfs rw
104 101 0:52 / /var/lib/shoal-lab/t1/node1/overlay/abc/merged/dev/shm rw - tmpfs shm rw
`

func TestMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(sampleMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	got := mountsUnder(ms, []string{"/run/shoal-lab/t1", "/var/lib/shoal-lab/t1"})
	want := []string{
		"/var/lib/shoal-lab/t1/node1/overlay/abc/merged/dev/shm", // deepest first
		"/var/lib/shoal-lab/t1/node1/overlay/abc/merged",
		"/run/shoal-lab/t1/node1/exec/netns/c 1", // octal escape decoded
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mountsUnder:\n got %q\nwant %q", got, want)
	}

	hs := cgroupHierarchies(ms)
	var mounts []string
	for _, h := range hs {
		mounts = append(mounts, h.Mount)
	}
	if len(hs) != 5 {
		t.Fatalf("hierarchies %v", mounts)
	}
	v1, v2 := joinHierarchies(hs)
	if len(v1) != 2 || v1[0].Mount != "/sys/fs/cgroup/freezer" || v1[1].Mount != "/sys/fs/cgroup/pids" || v2 != nil {
		t.Errorf("join hierarchies: %+v %+v", v1, v2)
	}
	if !reflect.DeepEqual(hs[3].Controllers, []string{"cpu", "cpuacct"}) {
		t.Errorf("controllers of cpu,cpuacct: %v", hs[3].Controllers)
	}
	// A pure cgroup v2 host: the daemon joins the v2 hierarchy.
	v1, v2 = joinHierarchies([]hierarchy{{Mount: "/sys/fs/cgroup", V2: true}})
	if len(v1) != 0 || v2 == nil || v2.Mount != "/sys/fs/cgroup" {
		t.Errorf("pure v2: %+v %+v", v1, v2)
	}
}

func TestProcParsing(t *testing.T) {
	cg := parseProcCgroup(strings.NewReader("9:name=systemd:/\n8:pids:/shoal-lab/t1/node2/shoald\n0::/\n"))
	if want := []string{"/", "/shoal-lab/t1/node2/shoald", "/"}; !reflect.DeepEqual(cg, want) {
		t.Errorf("parseProcCgroup = %q", cg)
	}
	for _, tc := range []struct {
		paths []string
		rel   string
		want  bool
	}{
		{[]string{"/shoal-lab/t1/node2/shoald"}, "/shoal-lab/t1/node2", true},
		{[]string{"/shoal-lab/t1/node2"}, "/shoal-lab/t1/node2", true},
		{[]string{"/shoal-lab/t1/node20/x"}, "/shoal-lab/t1/node2", false},
		{[]string{"/shoal-lab/t1x/node2"}, "/shoal-lab/t1", false},
		{[]string{"/shoal-lab/t1/node2/shoald/shoal-lab/t1/node2/abc"}, "/shoal-lab/t1/node2", true},
		{[]string{"/user.slice/shoal-lab/t1/node2/abc"}, "/shoal-lab/t1/node2", true},
		{[]string{"/", "/other"}, "/shoal-lab/t1", false},
	} {
		if got := inCgroupTree(tc.paths, tc.rel); got != tc.want {
			t.Errorf("inCgroupTree(%q, %q) = %v", tc.paths, tc.rel, got)
		}
	}
	if got := parseNSLink("net:[4026531840]"); got != 4026531840 {
		t.Errorf("parseNSLink = %d", got)
	}
	if got := parseNSLink("garbage"); got != 0 {
		t.Errorf("parseNSLink(garbage) = %d", got)
	}
}

func TestDaemonArgs(t *testing.T) {
	n := names{lab: "t1"}
	ni := NodeInfo{
		Name: "node2", DataRoot: n.dataRoot("node2"), ExecRoot: n.execRoot("node2"),
		Socket: n.socket("node2"), Pidfile: n.pidfile("node2"), CgroupParent: n.nodeCgroup("node2"),
	}
	got := daemonArgs(ni, "10.99.0.1:5000", []string{"--debug"}, []string{"--label", "zone=b"})
	want := []string{
		"--data-root", "/var/lib/shoal-lab/t1/node2",
		"--exec-root", "/run/shoal-lab/t1/node2/exec",
		"--host", "unix:///run/shoal-lab/t1/node2/exec/shoald.sock",
		"--pidfile", "/run/shoal-lab/t1/node2/exec/shoald.pid",
		"--cgroup-parent", "/shoal-lab/t1/node2",
		"--insecure-registry", "10.99.0.1:5000",
		"--debug", "--label", "zone=b",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("daemonArgs:\n got %q\nwant %q", got, want)
	}
}

func TestFindBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "shoald")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := findBinary(exe, "shoald"); err != nil || got != exe {
		t.Errorf("findBinary(override) = %q, %v", got, err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findBinary(plain, "shoald"); !errdefs.IsNotFound(err) {
		t.Errorf("non-executable override: %v, want NotFound", err)
	}
	t.Setenv("PATH", dir)
	if got, err := findBinary("", "shoald"); err != nil || got != exe {
		t.Errorf("findBinary(PATH) = %q, %v", got, err)
	}
	if _, err := findBinary("", "no-such-binary-shlab"); !errdefs.IsNotFound(err) {
		t.Errorf("missing binary: %v, want NotFound", err)
	}
}

func TestUpNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("checks the refusal as a non-root user")
	}
	_, err := Up(t.Context(), Options{Name: "shlabx"})
	if !errdefs.IsForbidden(err) || !strings.Contains(err.Error(), "shoal lab needs root") {
		t.Errorf("Up as non-root: %v", err)
	}
}

// The main thread is never terminated by Go, so lab work that changes a
// thread's namespaces or cgroups must never run there.
func TestDoomedThreadIsNeverMain(t *testing.T) {
	for i := 0; i < 500; i++ {
		var tid int
		if err := onDoomedThread(func() error { tid = unix.Gettid(); return nil }); err != nil {
			t.Fatal(err)
		}
		if tid == unix.Getpid() {
			t.Fatalf("iteration %d ran on the main thread", i)
		}
	}
}
