// Package constraint parses and matches placement constraints
// ("node.labels.zone==east") and placement preferences
// ("spread=node.labels.zone"), with swarmkit's syntax and messages. The
// scheduler and the global orchestrator match with it; the control API
// validates specs with it (ValidatePlacement).
//
// Shoal is stricter than swarmkit in one way: a constraint on an unknown key
// (say "node.label.zone==east", a typo of node.labels) is rejected up front
// instead of leaving the task pending forever.
package constraint

import (
	"net"
	"regexp"
	"strings"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Op is a constraint operator.
type Op int

const (
	// Eq is "==".
	Eq Op = iota
	// NotEq is "!=".
	NotEq
)

func (o Op) String() string {
	if o == NotEq {
		return "!="
	}
	return "=="
}

// Key prefixes of label constraints.
const (
	NodeLabelPrefix   = "node.labels."
	EngineLabelPrefix = "engine.labels."
)

// Fixed keys (matched case-insensitively, as swarmkit does).
const (
	KeyNodeID       = "node.id"
	KeyNodeHostname = "node.hostname"
	KeyNodeIP       = "node.ip"
	KeyNodeRole     = "node.role"
	KeyNodeOS       = "node.platform.os"
	KeyNodeArch     = "node.platform.arch"
)

var (
	// swarmkit's key and value grammars: values must not contain
	// operator characters such as '<', '>', '~', '!' or '='.
	keyPattern   = regexp.MustCompile(`^(?i)[a-z_][a-z0-9\-_.]+$`)
	valuePattern = regexp.MustCompile(`^(?i)[a-z0-9:\-_\s\.\*\(\)\?\+\[\]\\\^\$\|\/]+$`)
	operators    = []string{"==", "!="}
)

// Constraint is one parsed "key op value" expression.
type Constraint struct {
	Key string
	Op  Op
	Exp string

	kind  keyKind
	label string // for label keys: the label name (case-sensitive)
	ipNet *net.IPNet
	ip    net.IP
}

type keyKind int

const (
	kindUnknown keyKind = iota
	kindID
	kindHostname
	kindIP
	kindRole
	kindOS
	kindArch
	kindNodeLabel
	kindEngineLabel
)

func classify(key string) (keyKind, string) {
	switch {
	case strings.EqualFold(key, KeyNodeID):
		return kindID, ""
	case strings.EqualFold(key, KeyNodeHostname):
		return kindHostname, ""
	case strings.EqualFold(key, KeyNodeIP):
		return kindIP, ""
	case strings.EqualFold(key, KeyNodeRole):
		return kindRole, ""
	case strings.EqualFold(key, KeyNodeOS):
		return kindOS, ""
	case strings.EqualFold(key, KeyNodeArch):
		return kindArch, ""
	case len(key) > len(NodeLabelPrefix) && strings.EqualFold(key[:len(NodeLabelPrefix)], NodeLabelPrefix):
		return kindNodeLabel, key[len(NodeLabelPrefix):]
	case len(key) > len(EngineLabelPrefix) && strings.EqualFold(key[:len(EngineLabelPrefix)], EngineLabelPrefix):
		return kindEngineLabel, key[len(EngineLabelPrefix):]
	}
	return kindUnknown, ""
}

const supportedKeys = "node.id, node.hostname, node.ip, node.role, node.platform.os, node.platform.arch, node.labels.<label> or engine.labels.<label>"

// Parse parses constraint expressions. Errors are InvalidParameter with
// swarmkit's messages ("constraint expected one operator from ==, !=",
// "key 'x' is invalid", "value 'x' is invalid"), plus Shoal's for unknown
// keys and malformed node.ip values.
func Parse(exprs []string) ([]Constraint, error) {
	out := make([]Constraint, 0, len(exprs))
	for _, e := range exprs {
		c, err := parseOne(e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func parseOne(e string) (Constraint, error) {
	for i, op := range operators {
		if !strings.Contains(e, op) {
			continue
		}
		parts := strings.SplitN(e, op, 2)
		key := strings.TrimSpace(parts[0])
		if !keyPattern.MatchString(key) {
			return Constraint{}, errdefs.InvalidParameter("key '%s' is invalid", key)
		}
		val := strings.TrimSpace(parts[1])
		if !valuePattern.MatchString(val) {
			return Constraint{}, errdefs.InvalidParameter("value '%s' is invalid", val)
		}
		c := Constraint{Key: key, Op: Op(i), Exp: val}
		c.kind, c.label = classify(key)
		switch c.kind {
		case kindUnknown:
			return Constraint{}, errdefs.InvalidParameter("constraint key '%s' is not supported: use %s", key, supportedKeys)
		case kindIP:
			if ip := net.ParseIP(val); ip != nil {
				c.ip = ip
			} else if _, n, err := net.ParseCIDR(val); err == nil {
				c.ipNet = n
			} else {
				return Constraint{}, errdefs.InvalidParameter("value '%s' is invalid: node.ip needs an IP address or a CIDR network", val)
			}
		}
		return c, nil
	}
	return Constraint{}, errdefs.InvalidParameter("constraint expected one operator from %s", strings.Join(operators, ", "))
}

// String renders the constraint as written.
func (c Constraint) String() string { return c.Key + c.Op.String() + c.Exp }

// Match reports whether the constraint holds for a node attribute with any
// of the given values (case-insensitive, as swarmkit).
func (c Constraint) Match(whats ...string) bool {
	match := false
	for _, w := range whats {
		if strings.EqualFold(c.Exp, w) {
			match = true
			break
		}
	}
	if c.Op == NotEq {
		return !match
	}
	return match
}

// Matches reports whether n satisfies the constraint.
func (c *Constraint) Matches(n *store.Node) bool {
	switch c.kind {
	case kindID:
		return c.Match(n.ID)
	case kindHostname:
		return c.Match(n.Description.Hostname)
	case kindIP:
		addr := n.Status.Addr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			addr = h
		}
		nodeIP := net.ParseIP(addr)
		var in bool
		if c.ip != nil {
			in = c.ip.Equal(nodeIP)
		} else {
			in = nodeIP != nil && c.ipNet.Contains(nodeIP)
		}
		return in == (c.Op == Eq)
	case kindRole:
		return c.Match(string(n.Spec.Role))
	case kindOS:
		return c.Match(n.Description.Platform.OS)
	case kindArch:
		return c.Match(n.Description.Platform.Architecture)
	case kindNodeLabel:
		return c.Match(n.Spec.Labels[c.label])
	case kindEngineLabel:
		return c.Match(n.Description.Engine.Labels[c.label])
	}
	return false
}

// NodeMatches reports whether n satisfies every constraint.
func NodeMatches(cs []Constraint, n *store.Node) bool {
	for i := range cs {
		if !cs[i].Matches(n) {
			return false
		}
	}
	return true
}

// Spread is one parsed placement preference: spread tasks evenly over the
// values of Descriptor (nodes lacking it form their own group, "").
type Spread struct {
	Descriptor string
	kind       keyKind
	label      string
}

// ParsePreferences parses placement preferences. Swarmkit silently ignores
// descriptors it cannot use; Shoal rejects them, and also accepts the fixed
// node keys (node.hostname, node.platform.os, ...) as descriptors.
func ParsePreferences(prefs []swarm.PlacementPreference) ([]Spread, error) {
	out := make([]Spread, 0, len(prefs))
	for _, p := range prefs {
		if p.Spread == nil {
			return nil, errdefs.InvalidParameter("placement preference has no strategy: only spread is supported")
		}
		d := strings.TrimSpace(p.Spread.SpreadDescriptor)
		if d == "" {
			return nil, errdefs.InvalidParameter("placement preference spread needs a descriptor such as node.labels.zone")
		}
		k, label := classify(d)
		if k == kindUnknown || k == kindIP {
			return nil, errdefs.InvalidParameter("invalid placement preference descriptor '%s': use node.labels.<label>, engine.labels.<label>, node.id, node.hostname, node.role, node.platform.os or node.platform.arch", d)
		}
		out = append(out, Spread{Descriptor: d, kind: k, label: label})
	}
	return out, nil
}

// Value is n's value for the spread descriptor ("" when it has none).
func (s *Spread) Value(n *store.Node) string {
	switch s.kind {
	case kindID:
		return n.ID
	case kindHostname:
		return n.Description.Hostname
	case kindRole:
		return string(n.Spec.Role)
	case kindOS:
		return n.Description.Platform.OS
	case kindArch:
		return n.Description.Platform.Architecture
	case kindNodeLabel:
		return n.Spec.Labels[s.label]
	case kindEngineLabel:
		return n.Description.Engine.Labels[s.label]
	}
	return ""
}

// ValidatePlacement checks a task template's placement: constraints,
// preferences and platforms. It has the signature the control API's
// ConstraintValidator expects.
func ValidatePlacement(p *swarm.Placement) error {
	if p == nil {
		return nil
	}
	if _, err := Parse(p.Constraints); err != nil {
		return err
	}
	if _, err := ParsePreferences(p.Preferences); err != nil {
		return err
	}
	for _, pl := range p.Platforms {
		if pl.OS == "" && pl.Architecture == "" {
			return errdefs.InvalidParameter("invalid placement platform: OS or architecture must be set")
		}
	}
	return nil
}

// PlatformMatches reports whether the node's platform is one of the given
// ones (an empty list allows every platform). "x86_64" means "amd64", and an
// empty field matches anything, as in swarmkit.
func PlatformMatches(platforms []swarm.Platform, n *store.Node) bool {
	if len(platforms) == 0 {
		return true
	}
	na := normArch(n.Description.Platform.Architecture)
	nos := n.Description.Platform.OS
	for _, p := range platforms {
		if (p.Architecture == "" || normArch(p.Architecture) == na) && (p.OS == "" || p.OS == nos) {
			return true
		}
	}
	return false
}

func normArch(a string) string {
	if a == "x86_64" {
		return "amd64"
	}
	return a
}
