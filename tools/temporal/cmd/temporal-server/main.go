// Command temporal-server is Temporal's server (go.temporal.io/server, the version tools/temporal
// pins) with one addition: --tls-roles FILE turns on server-side authorization. The frontend then
// maps the verified client certificate's subject CN to Temporal roles (rolemap.go) and Temporal's
// default authorizer allows or refuses every call by those roles. Everything else is upstream's
// cmd/server: the same configuration directory, the same flags, one binary for every service.
//
//	temporal-server [--root DIR] [--config DIR] [--env NAME] [--zone ZONE] [--tls-roles FILE] [--allow-no-auth] \
//	    start --service frontend [--service history ...]
//
// --tls-roles defaults to $TEMPORAL_TLS_ROLES_FILE (for upstream's container entrypoint,
// docker-compose.yml). Without either, global.authorization of the configuration decides
// (upstream's behaviour), and a server with no authorizer starts only with --allow-no-auth.
package main

import (
	"flag"
	"fmt"
	"os"
	"path"
	"strings"
	_ "time/tzdata" // embed tzdata as a fallback

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/headers"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/mysql"      // MySQL 8
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql" // PostgreSQL
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"     // SQLite (tests)
	"go.temporal.io/server/temporal"
)

type serviceList []string

func (s *serviceList) String() string     { return strings.Join(*s, ",") }
func (s *serviceList) Set(v string) error { *s = append(*s, strings.Split(v, ",")...); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "temporal-server:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	global := flag.NewFlagSet("temporal-server", flag.ContinueOnError)
	root := global.String("root", envOr(config.EnvKeyRoot, "."), "root directory of execution environment")
	cfgDir := global.String("config", envOr(config.EnvKeyConfigDir, "config"), "config dir path relative to root")
	env := global.String("env", envOr(config.EnvKeyEnvironment, "development"), "runtime environment")
	zone := global.String("zone", os.Getenv(config.EnvKeyAvailabilityZone), "availability zone")
	roles := global.String("tls-roles", os.Getenv("TEMPORAL_TLS_ROLES_FILE"),
		"authorize by client certificate: file of \"<subject CN> <namespace|system>:<reader|writer|admin|worker>...\" lines ($TEMPORAL_TLS_ROLES_FILE)")
	allowNoAuth := global.Bool("allow-no-auth", os.Getenv(config.EnvKeyAllowNoAuth) != "", "allow no authorizer (upstream's flag; ignored with --tls-roles)")
	version := global.Bool("version", false, "print the server version")
	if err := global.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Println("temporal-server version", headers.ServerVersion, "(stackrun build: --tls-roles)")
		return nil
	}
	rest := global.Args()
	if len(rest) == 0 || rest[0] != "start" {
		return fmt.Errorf("usage: temporal-server [flags] start --service NAME...")
	}
	start := flag.NewFlagSet("start", flag.ContinueOnError)
	var services serviceList
	start.Var(&services, "service", "service to start (repeat: frontend, history, matching, worker)")
	if err := start.Parse(rest[1:]); err != nil {
		return err
	}
	if start.NArg() > 0 {
		return fmt.Errorf("start takes no arguments: use --service")
	}
	if len(services) == 0 {
		services = temporal.DefaultServices
	}

	cfg, err := config.LoadConfig(*env, path.Join(*root, *cfgDir), *zone)
	if err != nil {
		return fmt.Errorf("load configuration: %w", err)
	}
	logger := log.NewZapLogger(log.BuildZapLogger(cfg.Log))
	logger.Info("Build info.", tag.NewStringTag("server-version", headers.ServerVersion), tag.NewStringTag("tls-roles", *roles))
	if *roles != "" && *allowNoAuth {
		logger.Warn("--allow-no-auth ignored: --tls-roles authorizes every call")
	}

	var dc dynamicconfig.Client = dynamicconfig.NewNoopClient()
	if cfg.DynamicConfigClient != nil {
		if dc, err = dynamicconfig.NewFileBasedClient(cfg.DynamicConfigClient, logger, temporal.InterruptCh()); err != nil {
			return fmt.Errorf("dynamic config client: %w", err)
		}
	}

	var authorizer authorization.Authorizer
	var claimMapper authorization.ClaimMapper
	if *roles != "" {
		if cfg.Global.TLS.Frontend.Server.CertFile == "" || !cfg.Global.TLS.Frontend.Server.RequireClientAuth {
			return fmt.Errorf("--tls-roles needs global.tls.frontend.server with requireClientAuth: true (the roles come from client certificates)")
		}
		rm, err := loadRoleMap(*roles, logger)
		if err != nil {
			return err
		}
		authorizer, claimMapper = authorization.NewDefaultAuthorizer(), rm
	} else {
		if authorizer, err = authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization); err != nil {
			return fmt.Errorf("authorizer: %w", err)
		}
		if authorization.IsNoopAuthorizer(authorizer) && !*allowNoAuth {
			return fmt.Errorf("no authorizer: pass --tls-roles FILE, configure global.authorization, or --allow-no-auth")
		}
		if claimMapper, err = authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger); err != nil {
			return fmt.Errorf("claim mapper: %w", err)
		}
	}
	audience, err := authorization.GetAudienceMapperFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return fmt.Errorf("audience mapper: %w", err)
	}

	s, err := temporal.NewServer(
		temporal.ForServices(services),
		temporal.WithConfig(cfg),
		temporal.WithDynamicConfigClient(dc),
		temporal.WithLogger(logger),
		temporal.InterruptOn(temporal.InterruptCh()),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithAudienceGetter(func(*config.Config) authorization.JWTAudienceMapper { return audience }),
	)
	if err != nil {
		return fmt.Errorf("create server: %w", err)
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
