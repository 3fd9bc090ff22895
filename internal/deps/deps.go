package deps

import (
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/gophercloud/gophercloud/v2"
	_ "github.com/gophercloud/gophercloud/v2/openstack"
	_ "github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	_ "github.com/gophercloud/gophercloud/v2/testhelper"
	_ "github.com/pkg/sftp"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "go.temporal.io/sdk/client"
	_ "go.temporal.io/sdk/testsuite"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/crypto/ssh/agent"
	_ "golang.org/x/crypto/ssh/knownhosts"
	_ "github.com/stretchr/testify/require"
	_ "gopkg.in/yaml.v3"
)
