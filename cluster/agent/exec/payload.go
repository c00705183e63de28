package exec

import (
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/moby/moby/api/types/mount"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

// Secrets and configs reach a container as read-only files bound from
// <PayloadDir>/<task ID>/, written just before the container is created
// and removed once the task is over. PayloadDir belongs on a tmpfs (under
// /run) so secrets never touch a disk.

// payloadFile is one file to write for a task.
type payloadFile struct {
	path     string
	data     []byte
	uid, gid int
	mode     os.FileMode
}

const (
	secretsTarget = "/run/secrets"
	defaultMode   = 0o444
)

// payloads lists the files and mounts of a task's secrets and configs.
func payloads(a wire.Assignment, dir string) ([]mount.Mount, []payloadFile, error) {
	cs := a.Task.Spec.ContainerSpec
	if cs == nil || (len(cs.Secrets) == 0 && len(cs.Configs) == 0) {
		return nil, nil, nil
	}
	if dir == "" {
		return nil, nil, errdefs.NotImplemented("secrets and configs are not supported on this node (no payload directory)")
	}
	byID := func(ps []wire.Payload, id string) ([]byte, bool) {
		for _, p := range ps {
			if p.ID == id {
				return p.Data, true
			}
		}
		return nil, false
	}
	taskDir := filepath.Join(dir, a.Task.ID)
	var mounts []mount.Mount
	var files []payloadFile
	add := func(kind, id, name, uid, gid string, mode os.FileMode, data []byte, target string) error {
		if name == "" || id == "" {
			return errdefs.InvalidParameter("%s reference without a file name or ID", kind)
		}
		u, err := atoiDefault(uid)
		if err != nil {
			return errdefs.InvalidParameter("%s %s: invalid UID %q", kind, name, uid)
		}
		g, err := atoiDefault(gid)
		if err != nil {
			return errdefs.InvalidParameter("%s %s: invalid GID %q", kind, name, gid)
		}
		if mode == 0 {
			mode = defaultMode
		}
		src := filepath.Join(taskDir, kind+"s", id)
		files = append(files, payloadFile{path: src, data: data, uid: u, gid: g, mode: mode})
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: src, Target: target, ReadOnly: true})
		return nil
	}
	for _, ref := range cs.Secrets {
		if ref == nil || ref.File == nil {
			continue
		}
		data, ok := byID(a.Secrets, ref.SecretID)
		if !ok {
			return nil, nil, errdefs.NotFound("secret %s (%s) not found", ref.SecretName, ref.SecretID)
		}
		target := ref.File.Name
		if !path.IsAbs(target) {
			target = path.Join(secretsTarget, target)
		}
		if err := add("secret", ref.SecretID, ref.File.Name, ref.File.UID, ref.File.GID, ref.File.Mode, data, target); err != nil {
			return nil, nil, err
		}
	}
	for _, ref := range cs.Configs {
		if ref == nil || ref.File == nil {
			continue // runtime targets (credential specs) are not files
		}
		data, ok := byID(a.Configs, ref.ConfigID)
		if !ok {
			return nil, nil, errdefs.NotFound("config %s (%s) not found", ref.ConfigName, ref.ConfigID)
		}
		target := ref.File.Name
		if !path.IsAbs(target) {
			target = "/" + target
		}
		if err := add("config", ref.ConfigID, ref.File.Name, ref.File.UID, ref.File.GID, ref.File.Mode, data, target); err != nil {
			return nil, nil, err
		}
	}
	return mounts, files, nil
}

func atoiDefault(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err == nil && n < 0 {
		return 0, strconv.ErrRange
	}
	return n, err
}

// writePayloads writes the files, readable only through the container's
// bind mounts (the task directory is root's alone).
func writePayloads(files []payloadFile) error {
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return errdefs.System("payload directory: %v", err)
		}
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return errdefs.System("writing payload: %v", err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(tmp, f.uid, f.gid); err != nil {
				os.Remove(tmp)
				return errdefs.System("payload owner: %v", err)
			}
		}
		if err := os.Chmod(tmp, f.mode.Perm()); err != nil {
			os.Remove(tmp)
			return errdefs.System("payload mode: %v", err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			os.Remove(tmp)
			return errdefs.System("payload: %v", err)
		}
	}
	return nil
}

// removePayloads deletes a task's payload directory.
func (e *Executor) removePayloads(taskID string) {
	if e.cfg.PayloadDir == "" || taskID == "" || taskID != filepath.Base(taskID) {
		return
	}
	_ = os.RemoveAll(filepath.Join(e.cfg.PayloadDir, taskID))
}

// prunePayloads deletes the payload directories of tasks not in keep.
func (e *Executor) prunePayloads(keep map[string]bool) {
	if e.cfg.PayloadDir == "" {
		return
	}
	ents, err := os.ReadDir(e.cfg.PayloadDir)
	if err != nil {
		return
	}
	for _, d := range ents {
		if !keep[d.Name()] {
			_ = os.RemoveAll(filepath.Join(e.cfg.PayloadDir, d.Name()))
		}
	}
}
