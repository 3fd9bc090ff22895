// Package svcctl holds the stand-in for systemctl that integration tests install on their sshd
// "hosts" (there is no systemd here; the OpenStack lab's end-to-end tests use real services).
package svcctl

// Script is svcctl: services are files in the state folder beside it. `start` fails while
// <service>.fail-start exists and logs an AMQP connection line, as oslo.messaging would.
const Script = `#!/bin/sh
dir=$(dirname "$0")/state
case "$1" in
  status) [ -e "$dir/$2.running" ] && { echo active; exit 0; }; echo inactive; exit 3 ;;
  start)
    if [ -e "$dir/$2.fail-start" ]; then echo "Job for $2 failed" >&2; exit 1; fi
    touch "$dir/$2.running"; echo start >> "$dir/$2.actions"
    echo "$(date -u '+%Y-%m-%d %H:%M:%S').123 4242 INFO oslo.messaging._drivers.impl_rabbit [-] Connected to AMQP server on 127.0.0.1:5672 via [amqp] client with port 40000." >> "$dir/$2.log" ;;
  stop) rm -f "$dir/$2.running"; echo stop >> "$dir/$2.actions" ;;
  *) echo "usage: svcctl status|start|stop SERVICE" >&2; exit 2 ;;
esac
`
