package cli

import (
	"bytes"
	"context"
	"io"
	"slices"
	"testing"
)

func TestSplitAddrs(t *testing.T) {
	if got := SplitAddrs(" a:1, ,b:2,"); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Fatalf("SplitAddrs = %q", got)
	}
	if got := SplitAddrs(""); got != nil {
		t.Fatalf("SplitAddrs(\"\") = %q, want nil", got)
	}
}

func TestProgramRun(t *testing.T) {
	p := Program{
		Name:   "x",
		Usage:  "usage: x",
		Worker: func(context.Context, []string, io.Writer) int { return 3 },
		Client: func(context.Context, []string, io.Writer, io.Writer) int { return 4 },
	}
	for _, c := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{nil, 2, "", "usage: x\n"},
		{[]string{"worker"}, 3, "", ""},
		{[]string{"client"}, 4, "", ""},
		{[]string{"--help"}, 0, "usage: x\n", ""},
		{[]string{"bogus"}, 2, "", "x: unknown command \"bogus\"\nusage: x\n"},
	} {
		var out, errs bytes.Buffer
		if code := p.Run(context.Background(), c.args, &out, &errs); code != c.code || out.String() != c.stdout || errs.String() != c.stderr {
			t.Errorf("Run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", c.args, code, out.String(), errs.String(), c.code, c.stdout, c.stderr)
		}
	}
}

func TestLoggerNamesTheFlag(t *testing.T) {
	for _, c := range []struct{ flag, want string }{
		{"", `bad --log-level "loud": want debug, info, warn or error`},
		{"-log-level", `bad -log-level "loud": want debug, info, warn or error`},
	} {
		_, err := (&Common{Level: "loud", LevelFlag: c.flag}).Logger(io.Discard)
		if err == nil || err.Error() != c.want {
			t.Errorf("Logger error %v, want %q", err, c.want)
		}
	}
	if _, err := (&Common{Level: "debug"}).Logger(io.Discard); err != nil {
		t.Errorf("debug: %v", err)
	}
}
