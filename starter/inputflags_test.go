package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/stackrun/stackrun/workflows"
)

type everyKind struct {
	workflows.Meta
	Host     string        `flag:"host" usage:"a host (required)"`
	Count    int           `flag:"count" usage:"how many"`
	Big      int64         `flag:"big" usage:"a big number"`
	Force    bool          `flag:"force" usage:"force it"`
	Hosts    []string      `flag:"hosts" usage:"comma list"`
	Since    time.Time     `flag:"since" usage:"RFC 3339"`
	Wait     time.Duration `flag:"wait-for" usage:"a duration"`
	Internal string        // no tag: not a flag
	Skipped  string        `flag:"-"`
}

func TestBindInputFlagsEveryKind(t *testing.T) {
	in := &everyKind{}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	flags, err := bindInputFlags(fs, in)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range flags {
		names = append(names, f.Name+":"+f.Kind)
	}
	want := "host:string count:int big:int64 force:bool hosts:strings since:time wait-for:duration"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("flags = %q, want %q", got, want)
	}
	if !flags[0].Required || flags[1].Required {
		t.Errorf("required-ness from usage wrong: %+v", flags[:2])
	}
	// Meta's fields are flag:"-": never flags.
	for _, n := range []string{"requested_by", "reason", "dry_run", "RequestedBy", "Internal", "Skipped"} {
		if fs.Lookup(n) != nil {
			t.Errorf("flag %q should not exist", n)
		}
	}
	err = fs.Parse([]string{"--host", "compute1", "--count=3", "--big", "9000000000", "--force",
		"--hosts", "a,b", "--hosts", "c", "--since", "2026-05-01T14:00:00Z", "--wait-for", "90s"})
	if err != nil {
		t.Fatal(err)
	}
	want2 := everyKind{Host: "compute1", Count: 3, Big: 9000000000, Force: true, Hosts: []string{"a", "b", "c"},
		Since: time.Date(2026, 5, 1, 14, 0, 0, 0, time.UTC), Wait: 90 * time.Second}
	if in.Host != want2.Host || in.Count != want2.Count || in.Big != want2.Big || !in.Force ||
		strings.Join(in.Hosts, ",") != "a,b,c" || !in.Since.Equal(want2.Since) || in.Wait != want2.Wait {
		t.Fatalf("parsed %+v, want %+v", *in, want2)
	}
	if got := fs.Lookup("since").Value.String(); got != "2026-05-01T14:00:00Z" {
		t.Errorf("since String() = %q", got)
	}
}

func TestBindInputFlagsBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--since", "yesterday"},
		{"--count", "many"},
		{"--wait-for", "5"},
		{"--force=maybe"},
	} {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		if _, err := bindInputFlags(fs, &everyKind{}); err != nil {
			t.Fatal(err)
		}
		if err := fs.Parse(args); err == nil {
			t.Errorf("%v: parsed without error", args)
		}
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	_, _ = bindInputFlags(fs, &everyKind{})
	err := fs.Parse([]string{"--since", "2026-05-01"})
	if err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("since error %v should mention RFC 3339", err)
	}
}

func TestBindInputFlagsRefusesUnknownKinds(t *testing.T) {
	cases := map[string]any{
		"float": &struct {
			F float64 `flag:"f"`
		}{},
		"map": &struct {
			M map[string]string `flag:"m"`
		}{},
		"ints": &struct {
			I []int `flag:"i"`
		}{},
		"uint": &struct {
			U uint `flag:"u"`
		}{},
		"pointer": &struct {
			P *string `flag:"p"`
		}{},
		"struct": &struct {
			S struct{ A int } `flag:"s"`
		}{},
	}
	for name, in := range cases {
		_, err := bindInputFlags(pflag.NewFlagSet("x", pflag.ContinueOnError), in)
		if err == nil || !strings.Contains(err.Error(), "has type") {
			t.Errorf("%s: err = %v, want a refusal naming the type", name, err)
		}
	}
	type named string
	if _, err := bindInputFlags(pflag.NewFlagSet("x", pflag.ContinueOnError), &struct {
		N named `flag:"n"`
	}{}); err == nil {
		t.Error("named string type accepted")
	}
	if _, err := bindInputFlags(pflag.NewFlagSet("x", pflag.ContinueOnError), struct{}{}); err == nil {
		t.Error("non-pointer accepted")
	}
	if _, err := bindInputFlags(pflag.NewFlagSet("x", pflag.ContinueOnError), &struct {
		A string `flag:"a"`
		B string `flag:"a"`
	}{}); err == nil || !strings.Contains(err.Error(), "already defined") {
		t.Errorf("duplicate flag: %v", err)
	}
	if _, err := bindInputFlags(pflag.NewFlagSet("x", pflag.ContinueOnError), &struct {
		a string `flag:"a"`
	}{}); err == nil {
		t.Error("unexported field accepted")
	}
}

// Every runbook the CLI offers must bind: a runbook whose input cannot become flags is a bug.
func TestEveryRunbookBinds(t *testing.T) {
	for _, rb := range workflows.Runbooks {
		fs := pflag.NewFlagSet(rb.Name, pflag.ContinueOnError)
		flags, err := bindInputFlags(fs, rb.NewInput())
		if err != nil {
			t.Errorf("%s: %v", rb.Name, err)
			continue
		}
		if len(flags) == 0 {
			t.Errorf("%s: no flags", rb.Name)
		}
		for _, f := range flags {
			if f.Usage == "" {
				t.Errorf("%s --%s: no usage", rb.Name, f.Name)
			}
		}
	}
}

func TestRunbookCommandFillsInput(t *testing.T) {
	root := newRootCmd(new(strings.Builder), new(strings.Builder))
	cmd, _, err := root.Find([]string{"run", "restart-service"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags([]string{"--host", "compute1", "--service", "nova-compute", "--reason", "x"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := cmd.Flags().GetString("host"); v != "compute1" {
		t.Errorf("host = %q", v)
	}
	if !strings.Contains(cmd.Example, "--host <host> --service <service>") {
		t.Errorf("example %q lacks the required flags", cmd.Example)
	}
}
