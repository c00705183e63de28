package nft

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/shoal/shoal/internal/testutil"
)

// testTable makes a uniquely named table (shbr_n...) and removes it with the
// test, checking with the nft CLI that it is gone.
func testTable(t *testing.T) (*Conn, *nftables.Table) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "nft")
	c, err := Open(0)
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: fmt.Sprintf("shbr_n%04x", rand.IntN(0x10000))}
	t.Cleanup(func() {
		if err := c.DeleteTable(tbl.Family, tbl.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		c.Close()
		out, _ := exec.Command("nft", "list", "tables").CombinedOutput()
		if strings.Contains(string(out), tbl.Name) {
			t.Errorf("table %s left behind", tbl.Name)
		}
	})
	return c, tbl
}

func TestReplaceTableAndRulesByComment(t *testing.T) {
	c, tbl := testTable(t)
	chain := &nftables.Chain{Name: "fwd", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter}
	build := func(comments ...string) func(*nftables.Conn) error {
		return func(b *nftables.Conn) error {
			b.AddChain(chain)
			for _, cm := range comments {
				b.AddRule(&nftables.Rule{Table: tbl, Chain: chain, UserData: Comment(cm),
					Exprs: Then(IIFName("shbrn-none", false), Counter(), Accept())})
			}
			return nil
		}
	}
	if ok, err := c.TableExists(tbl.Family, tbl.Name); ok || err != nil {
		t.Fatalf("exists before: %v %v", ok, err)
	}
	if err := c.ReplaceTable(tbl, build("a", "b", "a")); err != nil {
		t.Fatal(err)
	}
	rs, err := c.RulesByComment(tbl, chain, "a")
	if err != nil || len(rs) != 2 || rs[0].Handle == 0 {
		t.Fatalf("rules by comment: %v %v", rs, err)
	}
	// Replacing swaps the whole content.
	if err := c.ReplaceTable(tbl, build("c")); err != nil {
		t.Fatal(err)
	}
	all, err := c.GetRules(tbl, chain)
	if err != nil || len(all) != 1 || RuleComment(all[0]) != "c" {
		t.Fatalf("after replace: %v %v", all, err)
	}
	n, err := c.DeleteRulesByComment(tbl, chain, "c")
	if err != nil || n != 1 {
		t.Fatalf("delete by comment: %d %v", n, err)
	}
	if n, err := c.DeleteRulesByComment(tbl, chain, "c"); err != nil || n != 0 {
		t.Fatalf("delete again: %d %v", n, err)
	}
	// A failing build sends nothing: the table keeps its content.
	if err := c.ReplaceTable(tbl, func(*nftables.Conn) error { return errors.New("boom") }); err == nil {
		t.Fatal("failing build reported success")
	}
	if ok, _ := c.TableExists(tbl.Family, tbl.Name); !ok {
		t.Fatal("failing build removed the table")
	}
	if _, err := c.ListChain(tbl, "fwd"); err != nil {
		t.Fatalf("failing build changed the table: %v", err)
	}
	if err := c.DeleteTable(tbl.Family, tbl.Name); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTable(tbl.Family, tbl.Name); err != nil {
		t.Fatalf("deleting a missing table: %v", err)
	}
	if n, err := c.DeleteRulesByComment(tbl, chain, "a"); err != nil || n != 0 {
		t.Fatalf("rules of a missing table: %d %v", n, err)
	}
}

func TestMapElementsByComment(t *testing.T) {
	c, tbl := testTable(t)
	m := &nftables.Set{Table: tbl, Name: "ports", IsMap: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService),
		DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)}
	ip := netip.MustParseAddr("192.0.2.10")
	el := func(port uint16, owner string) nftables.SetElement {
		return nftables.SetElement{Key: Concat(Proto(6), Port(port)), Val: Concat(IPv4(ip), Port(80)), Comment: owner}
	}
	err := c.ReplaceTable(tbl, func(b *nftables.Conn) error {
		return b.AddSet(m, []nftables.SetElement{el(1000, "x"), el(1001, "y"), el(1002, "x")})
	})
	if err != nil {
		t.Fatal(err)
	}
	xs, err := c.ElementsByComment(m, "x")
	if err != nil || len(xs) != 2 {
		t.Fatalf("elements of x: %v %v", xs, err)
	}
	if !slicesEqual(xs[0].Val, Concat(IPv4(ip), Port(80))) {
		t.Fatalf("value read back %v", xs[0].Val)
	}
	if n, err := c.DeleteElementsByComment(m, "x"); err != nil || n != 2 {
		t.Fatalf("delete x: %d %v", n, err)
	}
	left, err := c.GetSetElements(m)
	if err != nil || len(left) != 1 || left[0].Comment != "y" {
		t.Fatalf("left: %v %v", left, err)
	}
	// Delete and re-add one key in one batch (what republishing a port
	// right after a detach does).
	err = c.Batch(func(b *nftables.Conn) error {
		if err := b.SetDeleteElements(m, []nftables.SetElement{{Key: Concat(Proto(6), Port(1001))}}); err != nil {
			return err
		}
		return b.SetAddElements(m, []nftables.SetElement{el(1001, "z")})
	})
	if err != nil {
		t.Fatal(err)
	}
	if zs, _ := c.ElementsByComment(m, "z"); len(zs) != 1 {
		t.Fatalf("re-added element: %v", zs)
	}
	// Deleting a missing key fails the whole batch, and is reported as such.
	err = c.Batch(func(b *nftables.Conn) error {
		return b.SetDeleteElements(m, []nftables.SetElement{{Key: Concat(Proto(6), Port(9))}})
	})
	if !IsNotExist(err) {
		t.Fatalf("missing element: %v", err)
	}
}

func slicesEqual(a, b []byte) bool { return string(a) == string(b) }
