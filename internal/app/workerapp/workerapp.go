// Package workerapp builds a Stackrun worker from configuration: the activity structs with their
// dependencies, the registrations, the audit log. worker/main.go and the integration tests share it.
package workerapp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/app/chat"
	"github.com/stackrun/stackrun/internal/infra/audit"
	"github.com/stackrun/stackrun/internal/infra/keepalive"
	"github.com/stackrun/stackrun/internal/infra/openstack"
	"github.com/stackrun/stackrun/internal/infra/remote"
	"github.com/stackrun/stackrun/workflows"
)

// App is a built worker and what it owns.
type App struct {
	Worker worker.Worker
	Audit  *audit.Log
	Pool   *remote.Pool
	close  []func()
}

// Close releases the SSH pool and the audit file.
func (a *App) Close() {
	for i := len(a.close) - 1; i >= 0; i-- {
		a.close[i]()
	}
}

// New builds the worker for cfg on client c. It does not start it.
func New(c client.Client, cfg *config.Config, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.Default()
	}
	app := &App{}
	var auditOut *os.File
	if cfg.Worker.AuditLog != "" {
		f, err := os.OpenFile(cfg.Worker.AuditLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, fmt.Errorf("worker.audit_log: %w", err)
		}
		auditOut = f
		app.close = append(app.close, func() { _ = f.Close() })
	}
	if auditOut != nil {
		app.Audit = audit.New(auditOut)
	} else {
		app.Audit = audit.New(nil)
	}

	// SSH: the pool verifies every host key against known_hosts.
	opts := remote.Options{
		User: cfg.SSH.User, KeyFile: cfg.SSH.KeyFile, UseAgent: cfg.SSH.UseAgent,
		KnownHostsFile: cfg.SSH.KnownHostsFile, ConnectTimeout: cfg.SSH.ConnectTimeout,
		CommandTimeout: cfg.SSH.CommandTimeout, MaxOutputBytes: cfg.SSH.MaxOutputBytes,
	}
	if cfg.SSH.JumpHost != "" {
		jh, user, err := jumpHost(cfg)
		if err != nil {
			return nil, err
		}
		opts.Jump, opts.JumpUser = &jh, user
	}
	pool, err := remote.NewPool(opts)
	if err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	app.Pool = pool
	app.close = append(app.close, func() { _ = pool.Close() })
	cat, err := remote.NewCatalogue(remote.DefaultCommands(), cfg.Commands, cfg.RoleCommands)
	if err != nil {
		return nil, fmt.Errorf("commands: %w", err)
	}
	// evacuate's configuration-management hold runs these on computes: unknown names would only
	// show when a host is already stopped for maintenance.
	for key, names := range map[string][]string{"policy.config_hold": cfg.Policy.ConfigHold, "policy.config_release": cfg.Policy.ConfigRelease} {
		for _, n := range names {
			if _, ok := cat.Template(n, "compute"); !ok {
				return nil, fmt.Errorf("%s: %q is not a catalogue command (commands, role_commands.compute)", key, n)
			}
		}
	}

	inv := map[string]activities.InventoryHost{}
	for name, h := range cfg.Inventory {
		port := h.Port
		if port == 0 {
			port = cfg.SSH.Port
		}
		inv[name] = activities.InventoryHost{Address: h.Address, Port: port, Roles: h.Roles, Labels: h.Labels}
	}
	services := map[string][]activities.ServiceFacts{}
	for role, r := range cfg.Roles {
		for _, s := range r.Services {
			services[role] = append(services[role], activities.ServiceFacts{Role: role, Name: s.Name, Log: s.Log, AMQP: s.AMQP})
		}
	}

	var (
		once    sync.Mutex
		clients *openstack.Clients
	)
	osOpts := openstack.Options{Cloud: cfg.OpenStack.Cloud, CloudsFile: cfg.OpenStack.CloudsFile,
		Region: cfg.OpenStack.Region, ComputeMicroversion: cfg.OpenStack.ComputeMicroversion,
		RequestTimeout: cfg.OpenStack.RequestTimeout}
	cloudClients := func(ctx context.Context) (*openstack.Clients, error) {
		once.Lock()
		defer once.Unlock()
		if clients != nil {
			return clients, nil
		}
		cl, err := openstack.NewClients(ctx, osOpts)
		if err != nil {
			return nil, err
		}
		// A service that did not answer now (one a staged upgrade restarts, say) must not stay
		// unavailable for the worker's life: keep such clients for this call only.
		if len(cl.Transient()) == 0 {
			clients = cl
		}
		return cl, nil
	}

	if n := cfg.Worker.WorkflowCacheSize; n > 0 {
		// Process-wide, and only before the first worker starts: a worker process has one.
		worker.SetStickyWorkflowCacheSize(n)
	}
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{
		// keepalive: a dead worker is noticed within an activity's heartbeat timeout.
		Interceptors: []interceptor.WorkerInterceptor{app.Audit.Interceptor(), keepalive.Interceptor(0)},
	})
	workflows.Register(w)
	keys, err := NewKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	w.RegisterActivity(&activities.Machine{Policy: cfg.Policy, Keys: keys.Policy, Log: log, Sinks: chat.Sinks(cfg.Chat, cfg.Temporal.Namespace)})
	w.RegisterActivity(&activities.Lease{Client: c, TaskQueue: cfg.Temporal.TaskQueue})
	hosts := &activities.Hosts{Inventory: inv, Services: services, Runner: pool, Catalogue: cat}
	w.RegisterActivity(hosts)
	w.RegisterActivity(&activities.Swift{Hosts: hosts, Files: pool, Cluster: SwiftCluster(cfg, services)})
	upgrade, err := Upgrade(cfg, hosts, pool, cat)
	if err != nil {
		return nil, err
	}
	w.RegisterActivity(upgrade)
	checksAct, closeChecks, err := checksActivities(cfg, c, hosts, SwiftCluster(cfg, services), cloudClients)
	if err != nil {
		return nil, fmt.Errorf("checks: %w", err)
	}
	app.close = append(app.close, closeChecks)
	w.RegisterActivity(checksAct)
	w.RegisterActivity(&activities.Cloud{Clients: cloudClients})
	w.RegisterActivity(diagnoseActivities(cfg, hosts, cloudClients))
	compute := &activities.Compute{Clients: cloudClients}
	w.RegisterActivity(compute)
	w.RegisterActivity(&activities.DiskInspector{Hosts: hosts, Compute: compute, Settings: InspectSettings(cfg.InspectDisk)})
	novaDB, closeDB, err := openNovaDB(cfg)
	if err != nil {
		return nil, err
	}
	app.close = append(app.close, closeDB)
	w.RegisterActivity(novaDB)
	outage := Outage(cfg, hosts, SwiftCluster(cfg, services), novaDB.DB)
	outage.Clients = cloudClients
	w.RegisterActivity(outage)
	app.Worker = w
	return app, nil
}

// SwiftCluster resolves the swift: section: every node's directories, ring address, device paths
// and the Swift services of its roles (proxies excepted).
func SwiftCluster(cfg *config.Config, services map[string][]activities.ServiceFacts) activities.SwiftCluster {
	sw := cfg.Swift
	c := activities.SwiftCluster{
		RingBuilderHost: sw.RingBuilderHost, BuilderDir: sw.BuilderDir, Parallelism: sw.Parallelism, MaxStepPercent: sw.MaxStepPercent,
		Ports: map[string]int{"account": sw.AccountPort, "container": sw.ContainerPort, "object": sw.ObjectPort},
		Nodes: map[string]activities.SwiftNodeInfo{},
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	for name, n := range sw.Nodes {
		info := activities.SwiftNodeInfo{
			Name: name, RingIP: or(n.RingIP, cfg.Inventory[name].Address),
			SwiftDir: or(n.SwiftDir, sw.SwiftDir), DevicesDir: or(n.DevicesDir, sw.DevicesDir),
			ReconCachePath: or(n.ReconCachePath, sw.ReconCachePath), Fstab: sw.Fstab,
			Region: max(n.Region, 1), Zone: n.Zone, Weight: n.Weight, Devices: map[string]string{},
		}
		if info.Weight == 0 {
			info.Weight = config.DefaultSwiftWeight
		}
		for dev, p := range n.Devices {
			info.Devices[dev] = or(p, "/dev/"+dev)
		}
		for _, role := range cfg.Inventory[name].Roles {
			if role == "proxy" {
				continue
			}
			for _, s := range services[role] {
				if strings.HasPrefix(s.Name, "swift") {
					info.Services = append(info.Services, s)
				}
			}
		}
		c.Nodes[name] = info
	}
	return c
}

// jumpHost resolves ssh.jump_host: an inventory name, or [user@]host[:port].
func jumpHost(cfg *config.Config) (remote.Host, string, error) {
	spec := cfg.SSH.JumpHost
	user := ""
	if i := strings.IndexByte(spec, '@'); i >= 0 {
		user, spec = spec[:i], spec[i+1:]
	}
	if h, ok := cfg.Inventory[spec]; ok {
		port := h.Port
		if port == 0 {
			port = cfg.SSH.Port
		}
		return remote.Host{Name: spec, Address: h.Address, Port: port}, user, nil
	}
	host, port := spec, cfg.SSH.Port
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		host = spec[:i]
		if _, err := fmt.Sscanf(spec[i+1:], "%d", &port); err != nil {
			return remote.Host{}, "", fmt.Errorf("ssh.jump_host %q: bad port", cfg.SSH.JumpHost)
		}
	}
	return remote.Host{Name: host, Address: host, Port: port}, user, nil
}

// InspectSettings converts the inspect_disk section for the DiskInspector.
func InspectSettings(c config.InspectDisk) activities.DiskInspectSettings {
	return activities.DiskInspectSettings{InstancesPath: c.InstancesPath, WorkDir: c.WorkDir, Pause: c.Pause,
		Method: c.Method, DefaultFormat: c.DefaultFormat}
}
