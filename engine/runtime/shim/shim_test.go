package shim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestAppendLogEntryIsDockerJSON(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	tests := []string{
		"hi\n",
		"quote \" backslash \\ tab \t cr \r\n",
		"<html>&amp;</html>\n",
		"ctrl \x01\x1b[0m\n",
		"utf8 héllo 日本 \u2028\n",
		"bad \xff\xfe utf8",
		"",
	}
	for _, msg := range tests {
		line := AppendLogEntry(nil, "stderr", []byte(msg), now)
		if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("%q: not one line: %q", msg, line)
		}
		var got struct {
			Log    string    `json:"log"`
			Stream string    `json:"stream"`
			Time   time.Time `json:"time"`
		}
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: %v in %s", msg, err, line)
		}
		// encoding/json turns each invalid byte into U+FFFD, as we do.
		var want string
		ref, _ := json.Marshal(msg)
		json.Unmarshal(ref, &want)
		if got.Log != want || got.Stream != "stderr" || !got.Time.Equal(now) {
			t.Fatalf("%q: decoded %+v", msg, got)
		}
		// Same bytes as encoding/json for the message (docker's encoder escapes the same way).
		if !bytes.Contains(line, append([]byte(`{"log":`), ref...)) {
			t.Fatalf("%q: encoded %s, encoding/json gives %s", msg, line, ref)
		}
	}
	if got := string(AppendLogEntry(nil, "stdout", []byte("x"), now)); !strings.HasSuffix(got, `"time":"2024-05-01T09:00:00.123456789Z"}`+"\n") {
		t.Fatalf("time not RFC3339Nano UTC: %s", got)
	}
}

func TestLineSplitter(t *testing.T) {
	long := strings.Repeat("a", MaxLogLine+10)
	tests := []struct {
		name   string
		chunks []string
		want   []string
	}{
		{"lines in one chunk", []string{"a\nb\nc\n"}, []string{"a\n", "b\n", "c\n"}},
		{"line across chunks", []string{"hel", "lo\nwor", "ld\n"}, []string{"hello\n", "world\n"}},
		{"trailing partial flushed", []string{"x\ny"}, []string{"x\n", "y"}},
		{"long line cut into partials", []string{long + "\n"}, []string{long[:MaxLogLine], long[MaxLogLine:] + "\n"}},
		{"long line across chunks", []string{long[:100], long[100:], "\n"}, []string{long[:MaxLogLine], long[MaxLogLine:] + "\n"}},
		{"empty lines", []string{"\n\n"}, []string{"\n", "\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s lineSplitter
			var got []string
			emit := func(m []byte) { got = append(got, string(m)) }
			for _, c := range tt.chunks {
				s.Split([]byte(c), emit)
			}
			s.Flush(emit)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("got %d msgs %q", len(got), got)
			}
		})
	}
}

func TestExitRecord(t *testing.T) {
	e := Exit{Code: 137, Signal: 9, OOM: true, Finished: time.Unix(1700000000, 42)}
	got, err := ParseExit(FormatExit(e))
	if err != nil || got.Code != 137 || got.Signal != 9 || !got.OOM || !got.Finished.Equal(e.Finished) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "1 2 3", "a 0 0 1", "1 0 0 x"} {
		if _, err := ParseExit(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestOptionsArgsRoundTrip(t *testing.T) {
	o := Options{ID: "id", Bundle: "/b", RuncRoot: "/r", Runc: "/usr/sbin/runc", LogPath: "/l", Cgroup: "/cg/id", TTY: true, Stdin: true}
	args := o.Args()
	if args[0] != "run" {
		t.Fatal(args)
	}
	got, err := parseArgs(args[1:])
	if err != nil || got != o {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := parseArgs([]string{"--id", "x"}); err == nil {
		t.Fatal("missing required flags accepted")
	}
}
