package main

import (
	"testing"

	"go.mongodb.org/atlas-sdk/v20250312020/admin"
)

// The strict re-decode is what catches fields the official schema doesn't have (the SDK itself ignores them).
func TestStrictDecode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		raw   string
		model any
		ok    bool
	}{
		{"known fields", `{"inbound":{"aws":{"us-east-1":["192.0.2.10/32"]}},"outbound":{}}`, &admin.ControlPlaneIPAddresses{}, true},
		{"unknown top-level field", `{"inbound":{},"outbound":{},"gateways":[]}`, &admin.ControlPlaneIPAddresses{}, false},
		{"unknown nested field", `{"results":[{"id":"65f0a1b2c3d4e5f607182940","copyRegions":[]}]}`, &admin.PaginatedCloudBackupShardedClusterSnapshot{}, false},
		{"float for an integer-valued number", `{"replicationSpecs":[{"regionConfigs":[{"electableSpecs":{"diskSizeGB":10.0}}]}]}`, &admin.ClusterDescription20240805{}, true},
		{"error envelope", `{"detail":"d","error":404,"errorCode":"CLUSTER_NOT_FOUND","parameters":["x"],"reason":"Not Found"}`, &admin.ApiError{}, true},
		{"empty body", ``, &admin.ApiError{}, false},
	} {
		if err := strictDecode([]byte(tc.raw), tc.model); (err == nil) != tc.ok {
			t.Errorf("%s: strictDecode = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
