// Package internal holds Stackrun's private packages in two layers, read in one direction:
//
//   - internal/infra: what activities use to reach the world (remote: SSH; openstack: gophercloud
//     clients; checks: probe findings and their store; audit: the activity log). It imports
//     nothing of Stackrun's own above it.
//   - internal/app: the application around the workflows (control: the Temporal client
//     operations; chat: the gateway; workerapp: the worker's wiring; report: rendering;
//     inputflags: runbook flags). It may import workflows, activities, config and infra.
//   - internal/testenv: test rigs (dev server, sshd, svcctl) for both.
package internal
