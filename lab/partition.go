package lab

import (
	"errors"
	"fmt"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

// Partitions are drop rules in one nftables table of the bridge family in
// the host netns: every frame between two nodes crosses the lab bridge from
// one node's veth port to the other's, so matching on the input and output
// ports cuts exactly that pair, both ways, for every protocol (ARP too),
// while the nodes still reach the host (registry) and everybody else.

// partitionPairs returns the node pairs to cut: each of nodes with each of
// from, or with every other node when from is empty. Pairs are sorted.
func partitionPairs(all, nodes, from []string) ([][2]string, error) {
	known := map[string]bool{}
	for _, n := range all {
		known[n] = true
	}
	if len(nodes) == 0 {
		return nil, errdefs.InvalidParameter("partition needs at least one node")
	}
	side := map[string]bool{}
	for _, n := range nodes {
		if !known[n] {
			return nil, errdefs.NotFound("no node %q in this lab", n)
		}
		side[n] = true
	}
	var other []string
	if len(from) == 0 {
		for _, n := range all {
			if !side[n] {
				other = append(other, n)
			}
		}
	} else {
		for _, n := range from {
			if !known[n] {
				return nil, errdefs.NotFound("no node %q in this lab", n)
			}
			if side[n] {
				return nil, errdefs.InvalidParameter("node %q cannot be partitioned from itself", n)
			}
			other = append(other, n)
		}
	}
	if len(other) == 0 {
		return nil, errdefs.InvalidParameter("nothing to partition from: the named nodes are the whole lab")
	}
	seen := map[[2]string]bool{}
	var out [][2]string
	for n := range side {
		for _, o := range other {
			p := sortedPair(n, o)
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sortPairs(out)
	return out, nil
}

// mergePairs returns the union of two pair lists, sorted.
func mergePairs(a, b [][2]string) [][2]string {
	seen := map[[2]string]bool{}
	var out [][2]string
	for _, l := range [][][2]string{a, b} {
		for _, p := range l {
			p = sortedPair(p[0], p[1])
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sortPairs(out)
	return out
}

func sortedPair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func sortPairs(ps [][2]string) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i][0] != ps[j][0] {
			return ps[i][0] < ps[j][0]
		}
		return ps[i][1] < ps[j][1]
	})
}

// dropRule drops frames bridged from port In to port Out.
type dropRule struct{ In, Out string }

// dropRules turns node pairs into rules for both directions, given each
// node's bridge port (veth) name.
func dropRules(pairs [][2]string, port map[string]string) ([]dropRule, error) {
	out := make([]dropRule, 0, 2*len(pairs))
	for _, p := range pairs {
		a, b := port[p[0]], port[p[1]]
		if a == "" || b == "" {
			return nil, errdefs.NotFound("no link for node pair %s/%s", p[0], p[1])
		}
		out = append(out, dropRule{In: a, Out: b}, dropRule{In: b, Out: a})
	}
	return out, nil
}

// exprs is the rule as nftables expressions: iifname In oifname Out drop.
func (r dropRule) exprs() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.In)},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.Out)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// ifname pads a link name to IFNAMSIZ as the kernel compares it.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// applyRules replaces the lab's partition table with exactly rules, in one
// transaction; no rules means no table at all.
func applyRules(table string, rules []dropRule) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: table}
	if len(rules) == 0 {
		return deleteTable(c, t)
	}
	// add+delete+add replaces whatever was there atomically.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{
		Name:     "forward",
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter,
	})
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs()})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table bridge %s: %w", table, err)
	}
	return nil
}

// deleteTable removes a table if it exists.
func deleteTable(c *nftables.Conn, t *nftables.Table) error {
	ts, err := c.ListTablesOfFamily(t.Family)
	if err != nil {
		return err
	}
	found := false
	for _, x := range ts {
		found = found || x.Name == t.Name
	}
	if !found {
		return nil
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete nftables table %s: %w", t.Name, err)
	}
	return nil
}

// removeTable deletes the lab's partition table if present.
func removeTable(table string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	return deleteTable(c, &nftables.Table{Family: nftables.TableFamilyBridge, Name: table})
}
