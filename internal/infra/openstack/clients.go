// Package openstack is Stackrun's one OpenStack layer: it builds the gophercloud v2 clients the
// activities use, from a clouds.yaml entry or from the OS_* variables of an openrc file, with
// explicit microversions, and offers every call the activities make (lists, gets, server
// actions, service updates, quotas) in gophercloud's style: methods on Clients, context first,
// an XxxOpts struct where the call takes options, every page of a list read and extracted in
// one place (listAll). Results are small plain structs (no gophercloud type leaks out, so
// callers that must not import gophercloud can use them). Errors say what was asked ("list
// servers: ...", "get server X: ...") and wrap gophercloud's: errors.As still finds its
// ErrUnexpectedResponseCode (a 404, a 409).
//
//	clients, err := openstack.NewClients(ctx, openstack.Options{Cloud: "lab"})
//	if err != nil {
//		return err
//	}
//	services, err := clients.ListServices(ctx, openstack.ServiceListOpts{Binary: "nova-compute"})
//
// Tests of code that uses Clients build one around gophercloud's testhelper
// fake server: &openstack.Clients{Compute: sc} with sc.Type = "compute"
// (lists_test.go and actions_test.go have a fixture per call).
package openstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gos "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Microversions Stackrun sends unless told otherwise.
const (
	// DefaultComputeMicroversion: services by UUID (2.53), migrations with
	// uuid and paging (2.59), embedded flavors (2.47), block_migration "auto"
	// (2.25), no "force" on live migration and evacuation (2.68), networks
	// "none" (2.37). Zed supports up to 2.93.
	DefaultComputeMicroversion = "2.90"
	// MinComputeMicroversion is the oldest compute microversion accepted.
	MinComputeMicroversion = 60 // 2.60
	// DefaultPlacementMicroversion: consumer generations (1.28) and
	// allocation candidates with nested providers (1.29), Rocky and later.
	DefaultPlacementMicroversion = "1.29"
)

// Service types as they appear in errors and in ServiceError.
const (
	ServiceCompute      = "compute"
	ServiceIdentity     = "identity"
	ServicePlacement    = "placement"
	ServiceImage        = "image"
	ServiceObjectStore  = "object-store"
	ServiceBlockStorage = "block-storage"
	ServiceNetwork      = "network"
)

// ErrServiceUnavailable is wrapped by the errors of helpers whose service is
// not in the catalog (or could not be set up when the clients were made).
var ErrServiceUnavailable = errors.New("service unavailable")

// errNotInCatalog: the cloud has no such service (permanent, unlike an endpoint that did not answer).
var errNotInCatalog = errors.New("not in the service catalog")

// Transient lists the services that were in the catalog but did not answer when the clients were
// made (a service restarting, say): clients made again later may have them.
func (c *Clients) Transient() []string {
	var out []string
	for name, err := range c.unavailable {
		if !errors.Is(err, errNotInCatalog) {
			out = append(out, name)
		}
	}
	return out
}

// Options selects the cloud.
type Options struct {
	// Cloud is the clouds.yaml entry. Empty: the OS_* variables, as the
	// openstack CLI reads them (OS_CLOUD is not consulted then).
	Cloud string
	// CloudsFile is an explicit clouds.yaml; empty: $OS_CLIENT_CONFIG_FILE,
	// ./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml.
	CloudsFile string
	// Region overrides the region of the clouds.yaml entry or $OS_REGION_NAME.
	Region string
	// ComputeMicroversion defaults to DefaultComputeMicroversion; it must
	// be 2.60 or later.
	ComputeMicroversion string
	// PlacementMicroversion defaults to DefaultPlacementMicroversion.
	PlacementMicroversion string
	// RequestTimeout bounds each HTTP request; 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// Clients are the authenticated service clients. Compute and Identity are
// always set. Placement, Image, ObjectStore, BlockStorage and Network are nil
// when the catalog has no such service (or it could not be set up: its
// endpoint failed version discovery); ServiceError says why.
type Clients struct {
	Provider     *gophercloud.ProviderClient
	Compute      *gophercloud.ServiceClient // Microversion set
	Identity     *gophercloud.ServiceClient
	Placement    *gophercloud.ServiceClient // Microversion set
	Image        *gophercloud.ServiceClient
	ObjectStore  *gophercloud.ServiceClient
	BlockStorage *gophercloud.ServiceClient // v3 (volumev3)
	Network      *gophercloud.ServiceClient

	// Region is the region endpoints were chosen in ("" = any).
	Region string

	unavailable map[string]error
}

// NewClients authenticates (with re-authentication allowed when the token
// expires, except for token auth) and creates the service clients.
func NewClients(ctx context.Context, opts Options) (*Clients, error) {
	computeMV := opts.ComputeMicroversion
	if computeMV == "" {
		computeMV = DefaultComputeMicroversion
	}
	if err := checkComputeMicroversion(computeMV); err != nil {
		return nil, err
	}
	placementMV := opts.PlacementMicroversion
	if placementMV == "" {
		placementMV = DefaultPlacementMicroversion
	}

	var (
		ao        gophercloud.AuthOptions
		eo        gophercloud.EndpointOpts
		tlsConfig *tls.Config
		err       error
		source    string
	)
	if opts.Cloud != "" {
		source = fmt.Sprintf("cloud %q", opts.Cloud)
		parseOpts := []clouds.ParseOption{clouds.WithCloudName(opts.Cloud)}
		if opts.CloudsFile != "" {
			if _, err := os.Stat(opts.CloudsFile); err != nil {
				return nil, fmt.Errorf("openstack: clouds file: %w", err)
			}
			parseOpts = append(parseOpts, clouds.WithLocations(opts.CloudsFile))
		}
		if opts.Region != "" {
			parseOpts = append(parseOpts, clouds.WithRegion(opts.Region))
		}
		ao, eo, tlsConfig, err = clouds.Parse(parseOpts...)
		if err != nil {
			return nil, fmt.Errorf("openstack: %s: %w", source, err)
		}
	} else {
		source = "OS_* environment"
		ao, eo, tlsConfig, err = authFromEnv(os.Getenv)
		if err != nil {
			return nil, fmt.Errorf("openstack: %s: %w", source, err)
		}
		if opts.Region != "" {
			eo.Region = opts.Region
		}
	}
	ao.AllowReauth = ao.TokenID == ""

	provider, err := newProvider(ctx, ao, tlsConfig, opts.RequestTimeout)
	if err != nil {
		return nil, fmt.Errorf("openstack: authenticate (%s at %s): %w", source, ao.IdentityEndpoint, err)
	}
	return newClients(provider, eo, computeMV, placementMV)
}

// newClients creates the service clients of an authenticated provider.
func newClients(provider *gophercloud.ProviderClient, eo gophercloud.EndpointOpts, computeMV, placementMV string) (*Clients, error) {
	provider.UserAgent.Prepend("stackrun")
	c := &Clients{Provider: provider, Region: eo.Region, unavailable: map[string]error{}}

	var err error
	if c.Compute, err = gos.NewComputeV2(provider, eo); err != nil {
		return nil, fmt.Errorf("openstack: compute endpoint: %w", err)
	}
	c.Compute.Microversion = computeMV
	if c.Identity, err = gos.NewIdentityV3(provider, eo); err != nil {
		return nil, fmt.Errorf("openstack: identity endpoint: %w", err)
	}

	optional := func(name string, create func(*gophercloud.ProviderClient, gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error)) *gophercloud.ServiceClient {
		sc, err := create(provider, eo)
		if err != nil {
			var nf *gophercloud.ErrEndpointNotFound
			if errors.As(err, &nf) {
				err = errNotInCatalog
			}
			c.unavailable[name] = err
			return nil
		}
		return sc
	}
	c.Placement = optional(ServicePlacement, gos.NewPlacementV1)
	if c.Placement != nil {
		c.Placement.Microversion = placementMV
	}
	c.Image = optional(ServiceImage, gos.NewImageV2)
	c.ObjectStore = optional(ServiceObjectStore, gos.NewObjectStorageV1)
	c.BlockStorage = optional(ServiceBlockStorage, gos.NewBlockStorageV3)
	c.Network = optional(ServiceNetwork, gos.NewNetworkV2)
	return c, nil
}

// ServiceError returns why an optional service client is nil (nil when it
// is set, or for an unknown service name).
func (c *Clients) ServiceError(service string) error {
	if err, ok := c.unavailable[service]; ok {
		return fmt.Errorf("openstack: %s: %w: %v", service, ErrServiceUnavailable, err)
	}
	return nil
}

// need returns sc, or an error wrapping ErrServiceUnavailable.
func (c *Clients) need(sc *gophercloud.ServiceClient, service string) (*gophercloud.ServiceClient, error) {
	if sc != nil {
		return sc, nil
	}
	if err := c.ServiceError(service); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("openstack: %s: %w", service, ErrServiceUnavailable)
}

func checkComputeMicroversion(mv string) error {
	major, minor, ok := strings.Cut(mv, ".")
	n, err := strconv.Atoi(minor)
	if !ok || major != "2" || err != nil || strconv.Itoa(n) != minor {
		return fmt.Errorf("openstack: compute microversion %q is not of the form 2.N", mv)
	}
	if n < MinComputeMicroversion {
		return fmt.Errorf("openstack: compute microversion %q is below 2.%d", mv, MinComputeMicroversion)
	}
	return nil
}

// authFromEnv reads the OS_* variables the way python-openstackclient does.
// gophercloud's openstack.AuthOptionsFromEnv is not enough: it ignores
// OS_USER_DOMAIN_* and OS_PROJECT_DOMAIN_*, so a standard Keystone v3 openrc
// (OS_PROJECT_NAME + OS_USER_DOMAIN_NAME + OS_PROJECT_DOMAIN_NAME) fails there.
func authFromEnv(getenv func(string) string) (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, error) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	var (
		ao   gophercloud.AuthOptions
		eo   gophercloud.EndpointOpts
		nil3 = func(err error) (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, error) {
			return gophercloud.AuthOptions{}, gophercloud.EndpointOpts{}, nil, err
		}
	)

	ao.IdentityEndpoint = getenv("OS_AUTH_URL")
	if ao.IdentityEndpoint == "" {
		return nil3(errors.New("OS_AUTH_URL is not set (source an openrc file, or set openstack.cloud)"))
	}
	ao.Username = getenv("OS_USERNAME")
	ao.UserID = first("OS_USER_ID", "OS_USERID")
	ao.Password = getenv("OS_PASSWORD")
	ao.TokenID = getenv("OS_TOKEN")
	ao.ApplicationCredentialID = getenv("OS_APPLICATION_CREDENTIAL_ID")
	ao.ApplicationCredentialName = getenv("OS_APPLICATION_CREDENTIAL_NAME")
	ao.ApplicationCredentialSecret = getenv("OS_APPLICATION_CREDENTIAL_SECRET")
	appCred := ao.ApplicationCredentialID != "" || ao.ApplicationCredentialName != ""

	ao.DomainID = first("OS_USER_DOMAIN_ID", "OS_DOMAIN_ID")
	ao.DomainName = first("OS_USER_DOMAIN_NAME", "OS_DOMAIN_NAME")

	switch {
	case appCred:
		if ao.ApplicationCredentialSecret == "" {
			return nil3(errors.New("OS_APPLICATION_CREDENTIAL_SECRET is not set"))
		}
		if ao.ApplicationCredentialID == "" && ao.UserID == "" && ao.Username == "" {
			return nil3(errors.New("an application credential by name needs OS_USERNAME or OS_USER_ID"))
		}
	case ao.TokenID != "":
	default:
		if ao.Username == "" && ao.UserID == "" {
			return nil3(errors.New("OS_USERNAME (or OS_USER_ID) is not set"))
		}
		if ao.Password == "" {
			return nil3(errors.New("OS_PASSWORD is not set"))
		}
		if ao.UserID == "" && ao.DomainID == "" && ao.DomainName == "" {
			return nil3(errors.New("OS_USER_DOMAIN_NAME (or OS_USER_DOMAIN_ID) is not set"))
		}
	}

	if !appCred {
		projectID := first("OS_PROJECT_ID", "OS_TENANT_ID")
		projectName := first("OS_PROJECT_NAME", "OS_TENANT_NAME")
		switch {
		case getenv("OS_SYSTEM_SCOPE") != "":
			if getenv("OS_SYSTEM_SCOPE") != "all" {
				return nil3(errors.New("OS_SYSTEM_SCOPE: only \"all\" is supported"))
			}
			ao.Scope = &gophercloud.AuthScope{System: true}
		case projectID != "":
			ao.Scope = &gophercloud.AuthScope{ProjectID: projectID}
		case projectName != "":
			s := &gophercloud.AuthScope{
				ProjectName: projectName,
				DomainID:    first("OS_PROJECT_DOMAIN_ID", "OS_DOMAIN_ID"),
				DomainName:  first("OS_PROJECT_DOMAIN_NAME", "OS_DOMAIN_NAME"),
			}
			if s.DomainID == "" && s.DomainName == "" {
				return nil3(errors.New("OS_PROJECT_NAME needs OS_PROJECT_DOMAIN_NAME (or OS_PROJECT_DOMAIN_ID)"))
			}
			ao.Scope = s
		case getenv("OS_DOMAIN_ID") != "" || getenv("OS_DOMAIN_NAME") != "":
			ao.Scope = &gophercloud.AuthScope{DomainID: getenv("OS_DOMAIN_ID"), DomainName: getenv("OS_DOMAIN_NAME")}
		}
	}

	eo.Region = getenv("OS_REGION_NAME")
	switch first("OS_INTERFACE", "OS_ENDPOINT_TYPE") {
	case "internal", "internalURL":
		eo.Availability = gophercloud.AvailabilityInternal
	case "admin", "adminURL":
		eo.Availability = gophercloud.AvailabilityAdmin
	default:
		eo.Availability = gophercloud.AvailabilityPublic
	}

	tlsConfig, err := tlsFromEnv(getenv)
	if err != nil {
		return nil3(err)
	}
	return ao, eo, tlsConfig, nil
}

// tlsFromEnv honours OS_CACERT, OS_CERT/OS_KEY and OS_INSECURE; nil when
// none is set.
func tlsFromEnv(getenv func(string) string) (*tls.Config, error) {
	caFile, certFile, keyFile, insecure := getenv("OS_CACERT"), getenv("OS_CERT"), getenv("OS_KEY"), getenv("OS_INSECURE")
	if caFile == "" && certFile == "" && keyFile == "" && insecure == "" {
		return nil, nil
	}
	cfg := &tls.Config{}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("OS_CACERT: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OS_CACERT: no PEM certificate in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("OS_CERT and OS_KEY must be set together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("OS_CERT/OS_KEY: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if insecure != "" {
		b, err := strconv.ParseBool(insecure)
		if err != nil {
			return nil, fmt.Errorf("OS_INSECURE: %w", err)
		}
		cfg.InsecureSkipVerify = b
	}
	return cfg, nil
}
