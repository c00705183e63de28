// Package nft is a thin layer over github.com/google/nftables shared by the
// network packages (bridge, service VIPs, ingress). It adds what every user of
// the library re-invents: atomic table replacement, idempotent deletion,
// finding rules and map elements by the comment that tags their owner, the
// byte layout of concatenated set keys, and small expression builders.
//
// Expression builders return plain []expr.Any so callers (and their unit
// tests) can treat rules as data.
package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Conn is a lasting nftables connection. It is not safe for concurrent
// batches: the library buffers messages per Conn, so callers serialise their
// batches (each user owns its own Conn).
type Conn struct {
	*nftables.Conn
	netnsFD int
}

// Open dials a lasting netlink connection in the current network namespace,
// or in the namespace netnsFD refers to when it is > 0.
func Open(netnsFD int) (*Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if netnsFD > 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Conn{Conn: c, netnsFD: netnsFD}, nil
}

// Close releases the netlink socket.
func (c *Conn) Close() error { return c.CloseLasting() }

// IsNotExist reports whether err is the kernel's "no such table/chain/set/
// element" answer.
func IsNotExist(err error) bool { return errors.Is(err, unix.ENOENT) }

// TableExists reports whether the table exists.
func (c *Conn) TableExists(family nftables.TableFamily, name string) (bool, error) {
	_, err := c.ListTableOfFamily(name, family)
	if err == nil {
		return true, nil
	}
	if IsNotExist(err) {
		return false, nil
	}
	return false, err
}

// DeleteTable removes a table with everything in it. A missing table is not
// an error.
func (c *Conn) DeleteTable(family nftables.TableFamily, name string) error {
	ok, err := c.TableExists(family, name)
	if err != nil || !ok {
		return err
	}
	err = c.Batch(func(b *nftables.Conn) error {
		b.DelTable(&nftables.Table{Family: family, Name: name})
		return nil
	})
	// Someone else may have deleted it since we looked.
	if err != nil && !IsNotExist(err) {
		return fmt.Errorf("delete table %s: %w", name, err)
	}
	return nil
}

// Batch runs fn against a fresh message buffer and sends what it queued as
// one netlink batch, which the kernel commits as a transaction: all of it
// applies or none does. If fn fails nothing is sent.
func (c *Conn) Batch(fn func(b *nftables.Conn) error) error {
	var opts []nftables.ConnOption
	if c.netnsFD > 0 {
		opts = append(opts, nftables.WithNetNSFd(c.netnsFD))
	}
	// A separate Conn keeps a failed fn's queued messages out of later
	// batches: the library has no way to discard a buffer.
	b, err := nftables.New(opts...)
	if err != nil {
		return err
	}
	if err := fn(b); err != nil {
		return err
	}
	return b.Flush()
}

// ReplaceTable makes table t hold exactly what build queues (chains, sets,
// rules), atomically: packets see either the old table or the new one, never
// a half-built one, and a table that did not exist is created.
func (c *Conn) ReplaceTable(t *nftables.Table, build func(b *nftables.Conn) error) error {
	err := c.Batch(func(b *nftables.Conn) error {
		// "add" is a no-op for an existing table; it makes the delete valid
		// whether or not the table exists, as `nft -f` scripts do.
		b.AddTable(t)
		b.DelTable(t)
		b.AddTable(t)
		return build(b)
	})
	if err != nil {
		return fmt.Errorf("replace table %s: %w", t.Name, err)
	}
	return nil
}

// ListTableNames lists the names of tables of a family.
func (c *Conn) ListTableNames(family nftables.TableFamily) ([]string, error) {
	ts, err := c.ListTablesOfFamily(family)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		names = append(names, t.Name)
	}
	return names, nil
}

// Comment encodes s as rule userdata the way nft does, so `nft list` shows
// it as `comment "s"`.
func Comment(s string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, s)
}

// RuleComment returns the comment of a rule read back from the kernel.
func RuleComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// RulesByComment lists the rules of a chain whose comment equals comment,
// with their kernel handles. The library does not report handles of rules it
// adds, so callers that delete rules individually find them this way.
func (c *Conn) RulesByComment(t *nftables.Table, chain *nftables.Chain, comment string) ([]*nftables.Rule, error) {
	rules, err := c.GetRules(t, chain)
	if err != nil {
		return nil, err
	}
	var out []*nftables.Rule
	for _, r := range rules {
		if RuleComment(r) == comment {
			out = append(out, r)
		}
	}
	return out, nil
}

// DeleteRulesByComment deletes (in one batch) the rules of a chain tagged
// with comment and returns how many there were. Missing table or chain: 0, nil.
func (c *Conn) DeleteRulesByComment(t *nftables.Table, chain *nftables.Chain, comment string) (int, error) {
	rules, err := c.RulesByComment(t, chain, comment)
	if err != nil {
		if IsNotExist(err) {
			return 0, nil
		}
		return 0, err
	}
	if len(rules) == 0 {
		return 0, nil
	}
	err = c.Batch(func(b *nftables.Conn) error {
		for _, r := range rules {
			if err := b.DelRule(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(rules), nil
}

// ElementsByComment lists a set's elements whose comment equals comment.
func (c *Conn) ElementsByComment(s *nftables.Set, comment string) ([]nftables.SetElement, error) {
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, err
	}
	var out []nftables.SetElement
	for _, e := range els {
		if e.Comment == comment {
			out = append(out, e)
		}
	}
	return out, nil
}

// DeleteElementsByComment deletes the elements of s tagged with comment and
// returns how many there were.
func (c *Conn) DeleteElementsByComment(s *nftables.Set, comment string) (int, error) {
	els, err := c.ElementsByComment(s, comment)
	if err != nil || len(els) == 0 {
		return 0, err
	}
	// Deletion matches by key only; the library would otherwise send data.
	keys := make([]nftables.SetElement, len(els))
	for i, e := range els {
		keys[i] = nftables.SetElement{Key: e.Key}
	}
	err = c.Batch(func(b *nftables.Conn) error { return b.SetDeleteElements(s, keys) })
	if err != nil {
		return 0, err
	}
	return len(els), nil
}
