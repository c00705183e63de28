package manager

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/controlapi"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

// Cluster-port endpoints served by managers. Public (no client
// certificate): the CA fetch and join. Any node: certificate renewal and
// the node session. Managers only: control RPCs (forwarded writes), Raft
// status and Raft join.
const (
	PathRootCA   = "/ca/root"
	PathJoin     = "/swarm/join"
	PathRenew    = "/ca/renew"
	PathSession  = "/node/session"
	PathControl  = "/control/"
	PathRaftStat = "/raft/status"
	PathRaftJoin = "/raft/join"
	PathDispatch = "/dispatcher/"
)

// RaftStatus is what GET /raft/status answers.
type RaftStatus struct {
	NodeID       string
	Leader       bool
	LeaderID     string
	LeaderAddr   string
	AppliedIndex uint64
	CommitIndex  uint64
}

// RaftJoinBody is the body of POST /raft/join: the caller's Raft address.
type RaftJoinBody struct {
	Addr string
}

func (m *Manager) mount() {
	s := m.cfg.Server
	s.HandlePublic("GET "+PathRootCA, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(m.cfg.TLS.Root().CertPEM)
	}))
	s.HandlePublic("POST "+PathJoin, jsonHandler(func(r *http.Request) (any, error) {
		var req controlapi.JoinRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		req.Addr = observedAddr(req.Addr, r.RemoteAddr)
		return m.control.Join(r.Context(), req)
	}))
	mux := s.Mux()
	mux.Handle("POST "+PathRenew, jsonHandler(func(r *http.Request) (any, error) {
		id, err := ca.PeerIdentity(r)
		if err != nil {
			return nil, err
		}
		var req controlapi.RenewRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		req.NodeID = id.NodeID
		return m.control.RenewCertificate(r.Context(), req)
	}))
	mux.Handle("GET "+PathSession, jsonHandler(func(r *http.Request) (any, error) {
		id, err := ca.PeerIdentity(r)
		if err != nil {
			return nil, err
		}
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
		if err != nil || wait > time.Minute {
			wait = 10 * time.Second
		}
		return m.control.Session(r.Context(), id.NodeID, since, wait), nil
	}))
	mux.Handle("POST "+PathControl+"{method}", s.ManagerOnly(m.fwd))
	mux.Handle("GET "+PathRaftStat, s.ManagerOnly(jsonHandler(func(r *http.Request) (any, error) {
		lid, laddr := m.raft.Leader()
		return RaftStatus{
			NodeID: m.cfg.NodeID, Leader: m.raft.IsLeader(), LeaderID: lid, LeaderAddr: laddr,
			AppliedIndex: m.raft.AppliedIndex(), CommitIndex: m.raft.CommitIndex(),
		}, nil
	})))
	mux.Handle("POST "+PathRaftJoin, s.ManagerOnly(jsonHandler(func(r *http.Request) (any, error) {
		id, err := ca.PeerIdentity(r)
		if err != nil {
			return nil, err
		}
		var body RaftJoinBody
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		return struct{}{}, m.control.RaftJoin(r.Context(), controlapi.RaftJoinRequest{NodeID: id.NodeID, Addr: body.Addr})
	})))
	if m.dispatcher != nil {
		// The dispatcher answers non-leader requests itself (Env.Leader).
		mux.Handle(PathDispatch, m.dispatcher.Handler())
		if mh, ok := m.dispatcher.(ManagerHandlers); ok {
			for pattern, h := range mh.ManagerHandlers() {
				mux.Handle(pattern, s.ManagerOnly(h))
			}
		}
	}
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 16<<20)).Decode(v); err != nil {
		return errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid request body")
	}
	return nil
}

func jsonHandler(fn func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := fn(r)
		if err != nil {
			transport.WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// observedAddr completes a joining node's advertised address with the
// address its connection came from when it did not name its own IP.
func observedAddr(advertised, remote string) string {
	host, port, err := net.SplitHostPort(advertised)
	if err != nil {
		host, port = "", strconv.Itoa(transport.DefaultPort)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		return advertised
	}
	rhost, _, err := net.SplitHostPort(remote)
	if err != nil {
		return advertised
	}
	return net.JoinHostPort(rhost, port)
}
