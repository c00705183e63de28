package controlapi

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

type switchLeader struct {
	leader atomic.Bool
	addr   atomic.Value // string
}

func (s *switchLeader) IsLeader() bool { return s.leader.Load() }
func (s *switchLeader) Leader() (string, string) {
	a, _ := s.addr.Load().(string)
	return "leader", a
}

func managerTLS(t *testing.T, rc *ca.RootCA, id string) *ca.NodeTLS {
	t.Helper()
	key, keyPEM, _ := ca.GenerateKey()
	csr, _ := ca.CreateCSR(key)
	cert, _, err := rc.Issue(ca.IssueRequest{CSRPEM: csr, NodeID: id, Role: swarm.NodeRoleManager, ClusterID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := ca.NewNodeTLS(rc, keyPEM, cert)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type echoReq struct {
	Kind  errdefs.Kind
	Msg   string
	Seq   bool
	Value int
}

type echoResp struct{ Value int }

// TestForwarding runs calls on a follower whose leader is another
// forwarder behind a real cluster port.
func TestForwarding(t *testing.T) {
	rc, _ := ca.CreateRootCA()
	leaderInfo := &switchLeader{}
	leaderInfo.leader.Store(true)
	lt := managerTLS(t, rc, "leader")
	leader := NewForwarder(leaderInfo, transport.NodeClient(lt))
	var calls atomic.Int32
	Handle(leader, "test.echo", func(ctx context.Context, r echoReq) (echoResp, error) {
		calls.Add(1)
		switch {
		case r.Seq:
			return echoResp{}, errdefs.Wrap(errdefs.KindConflict, store.ErrSequence)
		case r.Kind != 0:
			return echoResp{}, &errdefs.Error{Kind: r.Kind, Msg: r.Msg}
		}
		return echoResp{Value: r.Value * 2}, nil
	})
	srv, err := transport.Listen(transport.Config{ListenAddr: "127.0.0.1:0", TLS: lt})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Mux().Handle("POST /control/{method}", srv.ManagerOnly(leader))

	followerInfo := &switchLeader{}
	followerInfo.addr.Store(srv.Addr().String())
	follower := NewForwarder(followerInfo, transport.NodeClient(managerTLS(t, rc, "follower")))
	ctx := context.Background()

	tests := []struct {
		name string
		req  echoReq
		kind errdefs.Kind
		msg  string
		seq  bool
	}{
		{"ok", echoReq{Value: 21}, 0, "", false},
		{"not found", echoReq{Kind: errdefs.KindNotFound, Msg: "node x not found"}, errdefs.KindNotFound, "node x not found", false},
		{"precondition", echoReq{Kind: errdefs.KindInvalidParameter, Msg: "rpc error: code = FailedPrecondition desc = no"}, errdefs.KindInvalidParameter, "rpc error: code = FailedPrecondition desc = no", false},
		{"unavailable", echoReq{Kind: errdefs.KindUnavailable, Msg: "busy"}, errdefs.KindUnavailable, "busy", false},
		{"sequence", echoReq{Seq: true}, errdefs.KindConflict, "update out of sequence", true},
	}
	for _, tc := range tests {
		for _, via := range []struct {
			name string
			f    *Forwarder
		}{{"local", leader}, {"forwarded", follower}} {
			t.Run(tc.name+"/"+via.name, func(t *testing.T) {
				resp, err := Call[echoResp](ctx, via.f, "test.echo", tc.req)
				if tc.kind == 0 {
					if err != nil || resp.Value != 42 {
						t.Fatalf("%+v %v", resp, err)
					}
					return
				}
				if errdefs.KindOf(err) != tc.kind || err.Error() != tc.msg {
					t.Fatalf("err %q (%v)", err, errdefs.KindOf(err))
				}
				if tc.seq != store.IsSequence(err) {
					t.Fatalf("sequence sentinel: %v", store.IsSequence(err))
				}
			})
		}
	}
	if err := follower.Forward(ctx, "no.such", nil, nil); !errdefs.IsNotImplemented(err) {
		t.Fatalf("unknown method: %v", err)
	}

	// The leader lost leadership: the follower retries, then reports no
	// leader; nothing runs on a non-leader.
	leaderInfo.leader.Store(false)
	before := calls.Load()
	err = follower.Forward(ctx, "test.echo", echoReq{Value: 1}, nil)
	if !errdefs.IsUnavailable(err) || calls.Load() != before {
		t.Fatalf("after losing leadership: %v (calls %d→%d)", err, before, calls.Load())
	}
	// No leader known at all.
	followerInfo.addr.Store("")
	if err := follower.Forward(ctx, "test.echo", echoReq{}, nil); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("no leader: %v", err)
	}
	// A leader that does not answer.
	srv.Close()
	leaderInfo.leader.Store(true)
	followerInfo.addr.Store(srv.Addr().String())
	if err := follower.Forward(ctx, "test.echo", echoReq{}, nil); !errdefs.IsUnavailable(err) {
		t.Fatalf("dead leader: %v", err)
	}
}
