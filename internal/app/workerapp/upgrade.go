package workerapp

import (
	"fmt"
	"slices"

	"github.com/stackrun/stackrun/activities"
	"github.com/stackrun/stackrun/config"
	"github.com/stackrun/stackrun/internal/infra/remote"
)

// Upgrade builds the staged upgrade's activities: the packaged defaults of every service, merged
// field by field with upgrade.services, each schema command checked against the catalogue.
func Upgrade(cfg *config.Config, hosts *activities.Hosts, files activities.FileTransfer, cat *remote.Catalogue) (*activities.Upgrade, error) {
	services := activities.DefaultUpgradeServices()
	for name, o := range cfg.Upgrade.Services {
		s := services[name]
		s.Name = name
		if len(o.Packages) > 0 {
			s.Packages = slices.Clone(o.Packages)
		}
		if o.ConfigDir != "" {
			s.ConfigDir = o.ConfigDir
		}
		if o.ConfigFile != "" {
			s.ConfigFile = o.ConfigFile
		}
		if len(o.Databases) > 0 {
			s.Databases = slices.Clone(o.Databases)
		}
		if len(o.Processes) > 0 {
			s.Processes = slices.Clone(o.Processes)
		}
		if len(o.Schema) > 0 {
			s.Schema = slices.Clone(o.Schema)
		}
		services[name] = s
	}
	for name, s := range services {
		if len(s.Packages) == 0 || s.ConfigDir == "" || s.ConfigFile == "" || len(s.Processes) == 0 {
			return nil, fmt.Errorf("upgrade.services.%s: packages, config_dir, config_file and processes are required for a service without defaults", name)
		}
		for i, c := range s.Schema {
			if _, ok := cat.Template(c, ""); !ok {
				return nil, fmt.Errorf("upgrade.services.%s.schema[%d]: no command %q in the catalogue (commands.%s)", name, i, c, c)
			}
		}
	}
	return &activities.Upgrade{Hosts: hosts, Files: files, Services: services, BackupDir: cfg.Upgrade.BackupDir,
		DatabaseHost: cfg.Upgrade.DatabaseHost, DatabaseDefaultsFile: cfg.Upgrade.DatabaseDefaultsFile, Order: cfg.Upgrade.Order}, nil
}
