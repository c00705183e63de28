package runtime

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/errdefs"
)

// ResolvedUser is the identity a container process runs as.
type ResolvedUser struct {
	specs.User
	Home string // from passwd; "/" when unknown
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// ResolveUser resolves a docker user spec ("", "name", "uid", "name:group",
// "uid:gid", ...) against the container's /etc/passwd and /etc/group, and
// adds the user's supplementary groups and groupAdd (--group-add).
func ResolveUser(rootfs, spec string, groupAdd []string) (ResolvedUser, error) {
	var users []passwdEntry
	var groups []groupEntry
	if p, err := SecureJoin(rootfs, "/etc/passwd"); err == nil {
		users, _ = readPasswd(p)
	}
	if p, err := SecureJoin(rootfs, "/etc/group"); err == nil {
		groups, _ = readGroup(p)
	}
	return resolveUser(users, groups, spec, groupAdd)
}

func resolveUser(users []passwdEntry, groups []groupEntry, spec string, groupAdd []string) (ResolvedUser, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		userPart = "0"
	}
	var u ResolvedUser
	u.Home = "/"
	var name string
	if id, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		u.UID = uint32(id)
		found := false
		for _, e := range users {
			if e.uid == u.UID {
				u.GID, u.Home, name, found = e.gid, e.home, e.name, true
				break
			}
		}
		if !found {
			u.GID = 0
		}
	} else {
		found := false
		for _, e := range users {
			if e.name == userPart {
				u.UID, u.GID, u.Home, name, found = e.uid, e.gid, e.home, e.name, true
				break
			}
		}
		if !found {
			return ResolvedUser{}, errdefs.InvalidParameter("unable to find user %s: no matching entries in passwd file", userPart)
		}
	}
	if hasGroup {
		gid, err := lookupGroup(groups, groupPart)
		if err != nil {
			return ResolvedUser{}, err
		}
		u.GID = gid
	}
	seen := map[uint32]bool{}
	// Supplementary groups from /etc/group apply only when the group was
	// not given explicitly, as in docker (runc's user.GetExecUser).
	if name != "" && !hasGroup {
		for _, g := range groups {
			for _, m := range g.members {
				if m == name && g.gid != u.GID && !seen[g.gid] {
					seen[g.gid] = true
					u.AdditionalGids = append(u.AdditionalGids, g.gid)
				}
			}
		}
	}
	for _, ga := range groupAdd {
		gid, err := lookupGroup(groups, ga)
		if err != nil {
			return ResolvedUser{}, err
		}
		if !seen[gid] {
			seen[gid] = true
			u.AdditionalGids = append(u.AdditionalGids, gid)
		}
	}
	if u.Home == "" {
		u.Home = "/"
	}
	return u, nil
}

func lookupGroup(groups []groupEntry, g string) (uint32, error) {
	if id, err := strconv.ParseUint(g, 10, 32); err == nil {
		return uint32(id), nil
	}
	for _, e := range groups {
		if e.name == g {
			return e.gid, nil
		}
	}
	return 0, errdefs.InvalidParameter("unable to find group %s: no matching entries in group file", g)
}

func readPasswd(p string) ([]passwdEntry, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parsePasswd(f), nil
}

func parsePasswd(r io.Reader) []passwdEntry {
	var out []passwdEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 4 {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid)}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out
}

func readGroup(p string) ([]groupEntry, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseGroup(f), nil
}

func parseGroup(r io.Reader) []groupEntry {
	var out []groupEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 3 {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		e := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	}
	return out
}
