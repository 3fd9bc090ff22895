package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/control"
)

// app holds what every command shares: output streams, the global flags, and (once loaded) the
// configuration and the Temporal client.
type app struct {
	out, errOut io.Writer
	as          string
	keyFile     string
	output      string
	timeout     time.Duration

	cfg    *config.Config
	client client.Client
}

const (
	outputTable = "table"
	outputJSON  = "json"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	a := &app{out: stdout, errOut: stderr}
	root := &cobra.Command{
		Use:   "stackrun",
		Short: "Durable OpenStack runbooks on Temporal: start, watch, approve, report",
		Long: `stackrun is the operators' CLI of Stackrun. Runbooks run as Temporal workflows on the
Stackrun worker; this command starts them, lists and inspects runs, decides gates and stalled
steps, and prints reports. It only talks to Temporal (--temporal-address).

Configuration comes from --config, $STACKRUN_CONFIG, ./stackrun.yaml or
~/.config/stackrun/stackrun.yaml, then STACKRUN_* variables, then flags.

` + exitCodesHelp,
		Example: `  stackrun run restart-service --host compute1 --service nova-compute --reason "config change" --wait
  stackrun list --status WaitingApproval
  stackrun status restart-service/compute1/nova-compute
  stackrun approve restart-service/compute1/nova-compute approve-restart --comment "go"`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != outputTable && a.output != outputJSON {
				return usagef("--output %q: must be table or json", a.output)
			}
			if a.timeout <= 0 {
				return usagef("--timeout %s: must be positive", a.timeout)
			}
			return nil
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if a.client != nil {
				a.client.Close()
			}
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	config.BindFlags(pf)
	pf.StringVar(&a.as, "as", "", "operator name recorded on runs and decisions (default: your login name); you sign as them")
	pf.StringVar(&a.keyFile, "key", "", "private key (OpenSSH ed25519) to sign starts and decisions with (default: trust.signing_key_file, else ssh-agent)")
	pf.StringVarP(&a.output, "output", "o", outputTable, "output format: table or json")
	pf.DurationVar(&a.timeout, "timeout", 60*time.Second, "how long to wait for Temporal and the worker to answer (not for --wait)")

	root.AddCommand(
		newRunCmd(a),
		newListCmd(a),
		newStatusCmd(a),
		newDecideCmd(a, true),
		newDecideCmd(a, false),
		newResolveCmd(a),
		newReportCmd(a),
		newConfigCmd(a),
		newChatCmd(a),
		newSchedulesCmd(a),
		newVersionCmd(a),
	)
	return root
}

// loadConfig loads and validates the configuration (for the CLI's purpose).
func (a *app) loadConfig(cmd *cobra.Command) (*config.Config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	cfg, err := config.Load(config.LoadOptions{Flags: cmd.Flags()})
	if err != nil {
		return nil, err
	}
	if err := cfg.ValidateFor(config.ForCLI); err != nil {
		return nil, err
	}
	a.cfg = cfg
	return cfg, nil
}

// operator is who runs the command (--as or the login name).
func (a *app) operator() (string, error) {
	who, err := control.Identity(a.as)
	if err != nil {
		return "", &usageError{err}
	}
	return who, nil
}

// dial loads the configuration and connects to Temporal.
func (a *app) dial(cmd *cobra.Command) (client.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	ident := "stackrun-cli@" + host
	if who, err := control.Identity(a.as); err == nil {
		ident = "stackrun-cli/" + who + "@" + host
	}
	c, err := control.Dial(cfg, control.DialOptions{Identity: ident})
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// callCtx bounds one call to Temporal by --timeout.
func (a *app) callCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.timeout)
}

func (a *app) json() bool { return a.output == outputJSON }

// printJSON writes v as indented JSON on stdout.
func (a *app) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.out, "%s\n", b)
	return err
}

// exactArgs is cobra.ExactArgs with a usage error that names the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s takes %d argument(s): %v, got %d", cmd.CommandPath(), len(names), names, len(args))
		}
		for i, a := range args {
			if a == "" {
				return usagef("argument %s is empty", names[i])
			}
		}
		return nil
	}
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of stackrun",
		Example: "  stackrun version\n  stackrun version --output json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.json() {
				return a.printJSON(map[string]string{"version": Version})
			}
			_, err := fmt.Fprintf(a.out, "stackrun %s\n", Version)
			return err
		},
	}
}
