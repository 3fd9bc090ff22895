package activities

import "time"

// HostFacts is what the worker's inventory says about one host.
type HostFacts struct {
	Name     string            `json:"name"`
	Address  string            `json:"address"`
	Roles    []string          `json:"roles"`
	Labels   map[string]string `json:"labels,omitempty"`
	Services []ServiceFacts    `json:"services"`
}

// ServiceFacts describes one service of a host's role.
type ServiceFacts struct {
	Role string `json:"role"`
	Name string `json:"name"`
	Log  string `json:"log,omitempty"`
	AMQP bool   `json:"amqp,omitempty"`
}

// ServiceRequest names one service on one host.
type ServiceRequest struct {
	Host    string `json:"host"`
	Role    string `json:"role"`
	Service string `json:"service"`
}

// ServiceState is the answer of the service_status command.
type ServiceState struct {
	Running bool   `json:"running"`
	Output  string `json:"output,omitempty"`
}

// ServiceAction asks for a service to be started or stopped.
type ServiceAction struct {
	ServiceRequest
	Action string `json:"action"` // start | stop
}

// AMQPRequest asks whether a service's log shows an AMQP connection since a time.
type AMQPRequest struct {
	ServiceRequest
	Log   string    `json:"log"`
	Since time.Time `json:"since"`
}

// AMQPResult is the newest AMQP connection line found, or a socket.
type AMQPResult struct {
	Connected bool      `json:"connected"`
	At        time.Time `json:"at,omitempty"`
	Line      string    `json:"line,omitempty"`
	// Evidence is what proves the connection: EvidenceLog (the service logged it after Since) or
	// EvidenceSocket (its process holds an established TCP connection to an AMQP port now: weaker,
	// it says nothing about when the connection was made). Empty in results of older workers: log.
	Evidence string `json:"evidence,omitempty"`
}

// Kinds of AMQP evidence.
const (
	EvidenceLog    = "log"
	EvidenceSocket = "socket"
)

// WeakAMQP reports whether a connection was seen only as a socket (ss), not in the log.
func (r AMQPResult) WeakAMQP() bool { return r.Connected && r.Evidence == EvidenceSocket }

// APIProbe asks one OpenStack API a read-only question.
type APIProbe struct {
	Kind string `json:"kind"` // servers, images, projects, object-store, compute-service, volumes, volume-services
	Host string `json:"host,omitempty"`
	// volume-services: the Cinder binaries that must be up on Host (cinder-volume as Host@backend),
	// each with a report since Since (a state "up" from before a restart proves nothing).
	Binaries []string  `json:"binaries,omitempty"`
	Since    time.Time `json:"since,omitempty"`
}

// APIProbeResult is the answer to an APIProbe.
type APIProbeResult struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}
