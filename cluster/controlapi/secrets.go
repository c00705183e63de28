package controlapi

import (
	"bytes"
	"context"
	"regexp"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/identity"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Secrets and configs share their rules: a valid name, data of bounded
// size, only labels change after creation, and no removal while a service
// uses them. Secret data never leaves the store through this API.

var validPayloadName = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`)

// payloadKind describes one of the two kinds.
type payloadKind struct {
	kind store.Kind
	noun string
	// refs lists the names and IDs a service spec refers to.
	refs func(cs *swarm.ContainerSpec) (ids, names []string)
}

var (
	secretKind = payloadKind{store.KindSecret, "secret", func(cs *swarm.ContainerSpec) (ids, names []string) {
		for _, r := range cs.Secrets {
			if r != nil {
				ids, names = append(ids, r.SecretID), append(names, r.SecretName)
			}
		}
		return
	}}
	configKind = payloadKind{store.KindConfig, "config", func(cs *swarm.ContainerSpec) (ids, names []string) {
		for _, r := range cs.Configs {
			if r != nil {
				ids, names = append(ids, r.ConfigID), append(names, r.ConfigName)
			}
		}
		return
	}}
)

func (k payloadKind) validate(a swarm.Annotations, data []byte) error {
	if a.Name == "" {
		return errdefs.InvalidParameter("name must be provided")
	}
	if len(a.Name) > 64 || !validPayloadName.MatchString(a.Name) {
		return errdefs.InvalidParameter("invalid name %q: only [a-zA-Z0-9][a-zA-Z0-9-_.]*[a-zA-Z0-9], up to 64 characters, are allowed", a.Name)
	}
	if len(data) == 0 || len(data) > maxSecretSize {
		return errdefs.InvalidParameter("%s data must be larger than 0 and less than 500KB", k.noun)
	}
	return nil
}

func (k payloadKind) resolve(rt store.ReadTx, ref string) (store.Object, error) {
	if o := rt.Get(k.kind, ref); o != nil {
		return o, nil
	}
	if os := rt.Find(k.kind, store.ByName(ref)); len(os) == 1 {
		return os[0], nil
	}
	os := rt.Find(k.kind, store.ByIDPrefix(ref))
	switch len(os) {
	case 0:
		return nil, errdefs.NotFound("%s %s not found", k.noun, ref)
	case 1:
		return os[0], nil
	}
	return nil, errdefs.InvalidParameter("%s %s is ambiguous (%d matches found)", k.noun, ref, len(os))
}

// usedBy names the services that refer to object o.
func (k payloadKind) usedBy(rt store.ReadTx, id, name string) []string {
	var users []string
	for _, s := range rt.FindServices(store.All()) {
		cs := s.Spec.TaskTemplate.ContainerSpec
		if cs == nil {
			continue
		}
		ids, _ := k.refs(cs)
		for _, ref := range ids {
			if ref == id {
				users = append(users, s.Spec.Name)
				break
			}
		}
	}
	sort.Strings(users)
	return users
}

// Payloads is the control API for secrets and configs.
type Payloads struct {
	Store *store.Store
}

// CreateSecret stores a secret.
func (c *Payloads) CreateSecret(ctx context.Context, spec swarm.SecretSpec) (string, error) {
	if spec.Driver != nil && spec.Driver.Name != "" {
		return "", errdefs.NotImplemented("secret drivers are not supported")
	}
	if err := secretKind.validate(spec.Annotations, spec.Data); err != nil {
		return "", err
	}
	s := &store.Secret{}
	s.ID, s.Spec = identity.NewID(), spec
	return s.ID, c.create(ctx, secretKind, s, spec.Name)
}

// CreateConfig stores a config.
func (c *Payloads) CreateConfig(ctx context.Context, spec swarm.ConfigSpec) (string, error) {
	if err := configKind.validate(spec.Annotations, spec.Data); err != nil {
		return "", err
	}
	o := &store.Config{}
	o.ID, o.Spec = identity.NewID(), spec
	return o.ID, c.create(ctx, configKind, o, spec.Name)
}

func (c *Payloads) create(ctx context.Context, k payloadKind, o store.Object, name string) error {
	return c.Store.Update(ctx, func(tx store.Tx) error {
		if len(tx.Find(k.kind, store.ByName(name))) > 0 {
			return errdefs.Conflict("%s %s already exists", k.noun, name)
		}
		return tx.Create(o)
	})
}

// GetSecret returns a secret without its data.
func (c *Payloads) GetSecret(ref string) (swarm.Secret, error) {
	var (
		out swarm.Secret
		err error
	)
	c.Store.View(func(rt store.ReadTx) {
		var o store.Object
		if o, err = secretKind.resolve(rt, ref); err == nil {
			out = redact(o.(*store.Secret))
		}
	})
	return out, err
}

func redact(s *store.Secret) swarm.Secret {
	out := s.Secret
	out.Spec.Data = nil
	return out
}

// GetConfig returns a config with its data.
func (c *Payloads) GetConfig(ref string) (swarm.Config, error) {
	var (
		out swarm.Config
		err error
	)
	c.Store.View(func(rt store.ReadTx) {
		var o store.Object
		if o, err = configKind.resolve(rt, ref); err == nil {
			out = o.(*store.Config).Config
		}
	})
	return out, err
}

var payloadFilters = []string{"id", "name", "names", "label"}

func matchPayload(args filters.Args, id, name string, labels map[string]string) bool {
	if args.Contains("id") && !args.FuzzyMatch("id", id) {
		return false
	}
	if args.Contains("name") && !args.FuzzyMatch("name", name) {
		return false
	}
	if args.Contains("names") && !args.ExactMatch("names", name) {
		return false
	}
	return !args.Contains("label") || args.MatchKVList("label", labels)
}

func checkPayloadFilters(args filters.Args) error {
	for _, k := range args.Keys() {
		if !contains(payloadFilters, k) {
			return errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	return nil
}

// ListSecrets lists secrets (without data).
func (c *Payloads) ListSecrets(args filters.Args) ([]swarm.Secret, error) {
	if err := checkPayloadFilters(args); err != nil {
		return nil, err
	}
	out := []swarm.Secret{}
	c.Store.View(func(rt store.ReadTx) {
		for _, s := range rt.FindSecrets(store.All()) {
			if matchPayload(args, s.ID, s.Spec.Name, s.Spec.Labels) {
				out = append(out, redact(s))
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out, nil
}

// ListConfigs lists configs.
func (c *Payloads) ListConfigs(args filters.Args) ([]swarm.Config, error) {
	if err := checkPayloadFilters(args); err != nil {
		return nil, err
	}
	out := []swarm.Config{}
	c.Store.View(func(rt store.ReadTx) {
		for _, o := range rt.FindConfigs(store.All()) {
			if matchPayload(args, o.ID, o.Spec.Name, o.Spec.Labels) {
				out = append(out, o.Config)
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out, nil
}

// UpdateSecret changes a secret's labels (nothing else may change).
func (c *Payloads) UpdateSecret(ctx context.Context, ref string, version uint64, spec swarm.SecretSpec) error {
	return c.Store.Update(ctx, func(tx store.Tx) error {
		o, err := secretKind.resolve(tx, ref)
		if err != nil {
			return err
		}
		cur := o.(*store.Secret)
		if cur.Meta.Version.Index != version {
			return errdefs.Conflict("update out of sequence")
		}
		if spec.Name != cur.Spec.Name || (spec.Data != nil && !bytes.Equal(spec.Data, cur.Spec.Data)) {
			return errdefs.InvalidParameter("only updates to Labels are allowed")
		}
		next := cur.Copy()
		next.Spec.Labels = spec.Labels
		return tx.Update(next)
	})
}

// UpdateConfig changes a config's labels (nothing else may change).
func (c *Payloads) UpdateConfig(ctx context.Context, ref string, version uint64, spec swarm.ConfigSpec) error {
	return c.Store.Update(ctx, func(tx store.Tx) error {
		o, err := configKind.resolve(tx, ref)
		if err != nil {
			return err
		}
		cur := o.(*store.Config)
		if cur.Meta.Version.Index != version {
			return errdefs.Conflict("update out of sequence")
		}
		if spec.Name != cur.Spec.Name || (spec.Data != nil && !bytes.Equal(spec.Data, cur.Spec.Data)) {
			return errdefs.InvalidParameter("only updates to Labels are allowed")
		}
		next := cur.Copy()
		next.Spec.Labels = spec.Labels
		return tx.Update(next)
	})
}

// RemoveSecret deletes a secret no service uses.
func (c *Payloads) RemoveSecret(ctx context.Context, ref string) error {
	return c.remove(ctx, secretKind, ref)
}

// RemoveConfig deletes a config no service uses.
func (c *Payloads) RemoveConfig(ctx context.Context, ref string) error {
	return c.remove(ctx, configKind, ref)
}

func (c *Payloads) remove(ctx context.Context, k payloadKind, ref string) error {
	return c.Store.Update(ctx, func(tx store.Tx) error {
		o, err := k.resolve(tx, ref)
		if err != nil {
			return err
		}
		name := ""
		switch v := o.(type) {
		case *store.Secret:
			name = v.Spec.Name
		case *store.Config:
			name = v.Spec.Name
		}
		if users := k.usedBy(tx, o.GetID(), name); len(users) > 0 {
			noun := "service"
			if len(users) > 1 {
				noun = "services"
			}
			return errdefs.InvalidParameter("%s '%s' is in use by the following %s: %s", k.noun, name, noun, strings.Join(users, ", "))
		}
		return tx.Delete(k.kind, o.GetID())
	})
}

// checkReferences makes sure every secret and config a service names
// exists, filling in IDs from names as docker's CLI would have.
func checkReferences(rt store.ReadTx, cs *swarm.ContainerSpec) error {
	if cs == nil {
		return nil
	}
	for _, r := range cs.Secrets {
		if r == nil {
			continue
		}
		if r.SecretID == "" || rt.GetSecret(r.SecretID) == nil {
			return errdefs.InvalidParameter("secret not found: %s", firstNonEmpty(r.SecretName, r.SecretID))
		}
	}
	for _, r := range cs.Configs {
		if r == nil {
			continue
		}
		if r.ConfigID == "" || rt.GetConfig(r.ConfigID) == nil {
			return errdefs.InvalidParameter("config not found: %s", firstNonEmpty(r.ConfigName, r.ConfigID))
		}
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
