// Command sdk-judge drives the whole Encryption at Rest flow against a running atlas-sim through MongoDB's
// official Atlas Go SDK (go.mongodb.org/atlas-sdk/v20250312020/admin): only the SDK's typed calls and
// models talk to the Atlas API; plain HTTP goes only to the simulator's own /__sim control API (reset,
// snapshots, forcing a private-endpoint status) and the AWS side is set up in moto with aws-sdk-go-v2.
//
// Every answer is judged twice: by the SDK itself (status, content type, decoding into its model) and by a
// strict re-decode of the raw body into the same model with unknown fields disallowed, so a field the
// official schema doesn't have fails the run. Error answers must decode as ApiError with the expected
// errorCode through admin.AsError / admin.IsErrorCode.
//
// It prints one line per call: operation, auth mode, HTTP status, OK/FAIL, and exits 1 on any failure.
//
//	sdk-judge -url http://127.0.0.1:PORT -auth digest|oauth -project NAME -cluster RS -sharded-cluster SH
//
// Credentials come from SDK_JUDGE_PUBLIC_KEY/SDK_JUDGE_PRIVATE_KEY (digest) or
// SDK_JUDGE_CLIENT_ID/SDK_JUDGE_CLIENT_SECRET (service account), the AWS endpoint from MOTO_ENDPOINT.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/mongodb-forks/digest"
	"go.mongodb.org/atlas-sdk/v20250312020/admin"
	"go.mongodb.org/atlas-sdk/v20250312020/auth"
	"go.mongodb.org/atlas-sdk/v20250312020/auth/clientcredentials"
	"golang.org/x/oauth2"
)

// recorder keeps the raw body of the last Atlas API answer, for the strict re-decode.
type recorder struct {
	base   http.RoundTripper
	mu     sync.Mutex
	last   []byte
	accept string // the Accept the SDK sent
	ctype  string // the Content-Type of the answer
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/api/atlas/v2/") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.last, r.accept, r.ctype = body, req.Header.Get("Accept"), resp.Header.Get("Content-Type")
	r.mu.Unlock()
	return resp, nil
}

func (r *recorder) body() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// mediaType checks the answer's Content-Type: the versioned type the SDK asked for on success,
// application/json on errors (the SDK's own check accepts any JSON type).
func (r *recorder) mediaType(success bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := "application/json"
	if success {
		want = r.accept
	}
	if !strings.HasPrefix(r.ctype, want) {
		return fmt.Errorf("Content-Type %q, want %q", r.ctype, want)
	}
	return nil
}

type judge struct {
	mode     string
	base     string
	api      *admin.APIClient
	rec      *recorder
	control  *http.Client
	user     string // public key or client id
	secret   string // private key or client secret
	failures int
}

func (j *judge) line(op string, status int, ok bool, detail string) {
	verdict := "OK"
	if !ok {
		verdict = "FAIL"
		j.failures++
	}
	if detail != "" {
		detail = "  " + detail
	}
	fmt.Printf("%-54s %-6s %3d %s%s\n", op, j.mode, status, verdict, detail)
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// strictDecode re-decodes raw into a fresh value of model's type, refusing fields the model doesn't know.
func strictDecode(raw []byte, model any) error {
	if len(raw) == 0 {
		return errors.New("empty body")
	}
	fresh := reflect.New(reflect.TypeOf(model).Elem()).Interface()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(fresh); err != nil {
		return fmt.Errorf("strict decode into %T: %w", model, err)
	}
	return nil
}

func (j *judge) errDetail(err error) string {
	if err == nil {
		return ""
	}
	var oe *admin.GenericOpenAPIError
	if errors.As(err, &oe) {
		return fmt.Sprintf("%v body=%s", err, bytes.TrimSpace(oe.Body()))
	}
	return err.Error()
}

// ok judges a successful call that returns a model.
func ok[T any](j *judge, op string, want int, model *T, resp *http.Response, err error) *T {
	status := statusOf(resp)
	switch {
	case err != nil:
		j.line(op, status, false, j.errDetail(err))
		return nil
	case status != want:
		j.line(op, status, false, fmt.Sprintf("want HTTP %d", want))
		return nil
	case model == nil:
		j.line(op, status, false, "no model decoded")
		return nil
	}
	if e := strictDecode(j.rec.body(), model); e != nil {
		j.line(op, status, false, e.Error())
		return nil
	}
	if e := j.rec.mediaType(true); e != nil {
		j.line(op, status, false, e.Error())
		return nil
	}
	j.line(op, status, true, "")
	return model
}

// noContent judges a call answered without a body.
func (j *judge) noContent(op string, want int, resp *http.Response, err error) {
	status := statusOf(resp)
	if err != nil {
		j.line(op, status, false, j.errDetail(err))
		return
	}
	if len(j.rec.body()) != 0 {
		j.line(op, status, false, "a body on "+http.StatusText(want))
		return
	}
	j.line(op, status, status == want, "")
}

// apiError judges an expected error answer: the SDK's ApiError with the wanted status and errorCode.
func (j *judge) apiError(op string, want int, code string, resp *http.Response, err error) {
	status := statusOf(resp)
	if err == nil {
		j.line(op, status, false, "want an error, got success")
		return
	}
	apiErr, isAPI := admin.AsError(err)
	switch {
	case !isAPI:
		j.line(op, status, false, "not an SDK API error: "+err.Error())
	case status != want || apiErr.GetError() != want:
		j.line(op, status, false, fmt.Sprintf("want HTTP %d, ApiError.error=%d", want, apiErr.GetError()))
	case !admin.IsErrorCode(err, code):
		j.line(op, status, false, fmt.Sprintf("want errorCode %s, got %q", code, apiErr.GetErrorCode()))
	default:
		if e := strictDecode(j.rec.body(), &admin.ApiError{}); e != nil {
			j.line(op, status, false, e.Error())
			return
		}
		if e := j.rec.mediaType(false); e != nil {
			j.line(op, status, false, e.Error())
			return
		}
		j.line(op, status, true, code)
	}
}

// check records a semantic expectation on a decoded answer.
func (j *judge) check(op string, cond bool, detail string) {
	if !cond {
		j.line("  check "+op, 0, false, detail)
	}
}

// sim calls the simulator's control API (plain HTTP is fine there: it is not the Atlas API).
func (j *judge) sim(method, path string, body any) []byte {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, j.base+path, rd)
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		resp, err = j.control.Do(req)
		if err == nil {
			defer func() { _ = resp.Body.Close() }()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode < 300 {
				return out
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(out))
		}
	}
	j.line("sim "+method+" "+path, 0, false, err.Error())
	return nil
}

func env(name string) string {
	v := os.Getenv(name)
	if v == "" {
		fmt.Fprintf(os.Stderr, "sdk-judge: %s is not set\n", name)
		os.Exit(2)
	}
	return v
}

func main() {
	base := flag.String("url", "", "atlas-sim base URL (http://127.0.0.1:PORT)")
	mode := flag.String("auth", "digest", "digest (API key) or oauth (service account)")
	projectName := flag.String("project", "sdk-judge", "seeded project name")
	rsName := flag.String("cluster", "Cluster0", "seeded M10 replica-set cluster")
	shName := flag.String("sharded-cluster", "Sharded0", "seeded sharded cluster")
	flag.Parse()
	if *base == "" {
		fmt.Fprintln(os.Stderr, "sdk-judge: -url is required")
		os.Exit(2)
	}
	ctx := context.Background()
	rec := &recorder{base: http.DefaultTransport}
	mods := []admin.ClientModifier{admin.UseBaseURL(*base), admin.UseUserAgent("atlas-sim-sdk-judge")}
	var user, secret string
	switch *mode {
	case "digest":
		user, secret = env("SDK_JUDGE_PUBLIC_KEY"), env("SDK_JUDGE_PRIVATE_KEY")
		t := digestTransport(user, secret, rec)
		mods = append(mods, admin.UseHTTPClient(&http.Client{Transport: t, Timeout: 30 * time.Second}))
	case "oauth":
		// The token requests and the API calls both go through rec (oauth2 takes its base transport from
		// the context's client); UseOAuthAuth reads the base URL, so it comes after UseBaseURL.
		user, secret = env("SDK_JUDGE_CLIENT_ID"), env("SDK_JUDGE_CLIENT_SECRET")
		tokenCtx := context.WithValue(ctx, auth.HTTPClient, &http.Client{Transport: rec, Timeout: 30 * time.Second})
		mods = append(mods, admin.UseOAuthAuth(tokenCtx, user, secret))
	default:
		fmt.Fprintf(os.Stderr, "sdk-judge: -auth must be digest or oauth, not %q\n", *mode)
		os.Exit(2)
	}
	api, err := admin.NewClient(mods...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdk-judge: %v\n", err)
		os.Exit(2)
	}
	j := &judge{mode: *mode, base: strings.TrimSuffix(*base, "/"), api: api, rec: rec,
		control: &http.Client{Timeout: 30 * time.Second}, user: user, secret: secret}
	run(ctx, j, *projectName, *rsName, *shName)
	if j.failures > 0 {
		fmt.Printf("sdk-judge %s: %d failure(s)\n", *mode, j.failures)
		os.Exit(1)
	}
	fmt.Printf("sdk-judge %s: all calls OK\n", *mode)
}

func run(ctx context.Context, j *judge, projectName, rsName, shName string) {
	// A fresh simulator state for each auth mode: the startup seed.
	if j.sim("POST", "/__sim/reset", map[string]any{}) == nil {
		return
	}

	// Project by name and by id.
	g, r, err := j.api.ProjectsApi.GetGroupByName(ctx, projectName).Execute()
	g = ok(j, "ProjectsApi.GetGroupByName", 200, g, r, err)
	if g == nil {
		return
	}
	gid := g.GetId()
	g, r, err = j.api.ProjectsApi.GetGroup(ctx, gid).Execute()
	if g = ok(j, "ProjectsApi.GetGroup", 200, g, r, err); g != nil {
		j.check("GetGroup name", g.GetName() == projectName, g.GetName())
	}

	// Cloud provider access role: create, list, get.
	role, r, err := j.api.CloudProviderAccessApi.CreateCloudProviderAccess(ctx, gid,
		admin.NewCloudProviderAccessRoleRequest("AWS")).Execute()
	role = ok(j, "CloudProviderAccessApi.CreateCloudProviderAccess", 200, role, r, err)
	if role == nil {
		return
	}
	roleID, extID, atlasArn := role.GetRoleId(), role.GetAtlasAssumedRoleExternalId(), role.GetAtlasAWSAccountArn()
	j.check("CreateCloudProviderAccess fields", roleID != "" && extID != "" && atlasArn != "",
		"roleId, atlasAssumedRoleExternalId and atlasAWSAccountArn must be set")
	roles, r, err := j.api.CloudProviderAccessApi.ListCloudProviderAccess(ctx, gid).Execute()
	if roles = ok(j, "CloudProviderAccessApi.ListCloudProviderAccess", 200, roles, r, err); roles != nil {
		found := false
		for _, x := range roles.GetAwsIamRoles() {
			found = found || x.GetRoleId() == roleID
		}
		j.check("ListCloudProviderAccess has the role", found, roleID)
	}
	role, r, err = j.api.CloudProviderAccessApi.GetCloudProviderAccess(ctx, gid, roleID).Execute()
	ok(j, "CloudProviderAccessApi.GetCloudProviderAccess", 200, role, r, err)

	// The customer's side in moto: a KMS key, and an IAM role that first trusts the wrong external id.
	aw, err := newAWS(ctx, os.Getenv("MOTO_ENDPOINT"), j.mode)
	if err != nil {
		j.line("moto setup", 0, false, err.Error())
		return
	}
	if err := aw.createKeyAndRole(ctx, atlasArn, "not-"+extID); err != nil {
		j.line("moto setup", 0, false, err.Error())
		return
	}
	authorize := func() (*admin.CloudProviderAccessRole, *http.Response, error) {
		req := admin.NewCloudProviderAccessRoleRequestUpdate("AWS")
		req.SetIamAssumedRoleArn(aw.roleArn)
		return j.api.CloudProviderAccessApi.AuthorizeProviderAccessRole(ctx, gid, roleID, req).Execute()
	}
	_, r, err = authorize()
	j.apiError("CloudProviderAccessApi.AuthorizeProviderAccessRole", 400, "CANNOT_ASSUME_ROLE", r, err)
	if err := aw.trust(ctx, atlasArn, extID); err != nil {
		j.line("moto trust policy", 0, false, err.Error())
		return
	}
	role, r, err = authorize()
	if role = ok(j, "CloudProviderAccessApi.AuthorizeProviderAccessRole", 200, role, r, err); role != nil {
		j.check("authorized role", role.GetIamAssumedRoleArn() == aw.roleArn && role.HasAuthorizedDate(),
			"iamAssumedRoleArn and authorizedDate must be set")
	}

	// Encryption at Rest: get, enable with the key, get again.
	ear, r, err := j.api.EncryptionAtRestUsingCustomerKeyManagementApi.GetEncryptionAtRest(ctx, gid).Execute()
	ok(j, "EncryptionAtRestApi.GetEncryptionAtRest", 200, ear, r, err)
	want := admin.EncryptionAtRest{AwsKms: &admin.AWSKMSConfiguration{
		Enabled:             admin.PtrBool(true),
		CustomerMasterKeyID: admin.PtrString(aw.keyID),
		Region:              admin.PtrString("US_EAST_1"),
		RoleId:              admin.PtrString(roleID),
	}}
	ear, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.UpdateEncryptionAtRest(ctx, gid, &want).Execute()
	if ear = ok(j, "EncryptionAtRestApi.UpdateEncryptionAtRest", 200, ear, r, err); ear != nil {
		k := ear.GetAwsKms()
		j.check("UpdateEncryptionAtRest answer", k.GetEnabled() && k.GetValid() && k.GetCustomerMasterKeyID() == aw.keyID,
			fmt.Sprintf("enabled=%v valid=%v key=%q", k.GetEnabled(), k.GetValid(), k.GetCustomerMasterKeyID()))
		j.check("UpdateEncryptionAtRest roleId is writeOnly", !k.HasRoleId(), "roleId returned")
	}
	ear, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.GetEncryptionAtRest(ctx, gid).Execute()
	if ear = ok(j, "EncryptionAtRestApi.GetEncryptionAtRest", 200, ear, r, err); ear != nil {
		k := ear.GetAwsKms()
		j.check("GetEncryptionAtRest valid", k.GetValid(), "awsKms.valid is false")
	}

	// EAR private endpoints: create, list, get, force ACTIVE, delete.
	pe, r, err := j.api.EncryptionAtRestUsingCustomerKeyManagementApi.CreateRestPrivateEndpoint(ctx, gid, "AWS",
		&admin.EARPrivateEndpoint{RegionName: admin.PtrString("US_EAST_1")}).Execute()
	peID := ""
	if pe = ok(j, "EncryptionAtRestApi.CreateRestPrivateEndpoint", 202, pe, r, err); pe != nil {
		peID = pe.GetId()
		j.check("CreateRestPrivateEndpoint status", pe.GetStatus() == "INITIATING", pe.GetStatus())
		pes, r, err := j.api.EncryptionAtRestUsingCustomerKeyManagementApi.ListRestPrivateEndpoints(ctx, gid, "AWS").Execute()
		if pes = ok(j, "EncryptionAtRestApi.ListRestPrivateEndpoints", 200, pes, r, err); pes != nil {
			j.check("ListRestPrivateEndpoints", len(pes.GetResults()) == 1 && pes.GetTotalCount() == 1,
				fmt.Sprintf("%d results, totalCount %d", len(pes.GetResults()), pes.GetTotalCount()))
			j.checkLinks("ListRestPrivateEndpoints links", pes.GetLinks())
		}
		j.sim("PATCH", "/__sim/projects/"+gid+"/privateEndpoints/"+peID, map[string]any{"status": "ACTIVE"})
		pe, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.GetRestPrivateEndpoint(ctx, gid, "AWS", peID).Execute()
		if pe = ok(j, "EncryptionAtRestApi.GetRestPrivateEndpoint", 200, pe, r, err); pe != nil {
			j.check("GetRestPrivateEndpoint status", pe.GetStatus() == "ACTIVE", pe.GetStatus())
		}
		r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.RequestPrivateEndpointDeletion(ctx, gid, "AWS", peID).Execute()
		j.noContent("EncryptionAtRestApi.RequestPrivateEndpointDeletion", 204, r, err)
		pe, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.GetRestPrivateEndpoint(ctx, gid, "AWS", peID).Execute()
		if pe = ok(j, "EncryptionAtRestApi.GetRestPrivateEndpoint", 200, pe, r, err); pe != nil {
			j.check("GetRestPrivateEndpoint after delete", pe.GetStatus() == "DELETING", pe.GetStatus())
		}
	}

	// Clusters: the operator reads with 2024-08-05 and patches with 2024-10-23, as these SDK calls do.
	cl, r, err := j.api.ClustersApi.ListClusters(ctx, gid).Execute()
	if cl = ok(j, "ClustersApi.ListClusters", 200, cl, r, err); cl != nil {
		j.check("ListClusters", len(cl.GetResults()) == 2, fmt.Sprintf("%d clusters", len(cl.GetResults())))
		j.checkLinks("ListClusters links", cl.GetLinks())
	}
	// A query string (digest's uri covers it) and the second of two pages.
	cl, r, err = j.api.ClustersApi.ListClusters(ctx, gid).ItemsPerPage(1).PageNum(2).IncludeCount(true).Execute()
	if cl = ok(j, "ClustersApi.ListClusters (page 2 of 2)", 200, cl, r, err); cl != nil {
		rels := []string{}
		for _, l := range cl.GetLinks() {
			rels = append(rels, l.GetRel())
		}
		j.check("ListClusters page 2", len(cl.GetResults()) == 1 && cl.GetTotalCount() == 2 &&
			strings.Join(rels, ",") == "previous,self",
			fmt.Sprintf("%d results, totalCount %d, links %v", len(cl.GetResults()), cl.GetTotalCount(), rels))
		j.checkLinks("ListClusters page 2 links", cl.GetLinks())
	}
	c, r, err := j.api.ClustersApi.GetCluster(ctx, gid, rsName).Execute()
	c = ok(j, "ClustersApi.GetCluster", 200, c, r, err)
	if c != nil {
		j.check("GetCluster replica set", c.GetClusterType() == "REPLICASET" && c.GetStateName() == "IDLE",
			c.GetClusterType()+" "+c.GetStateName())
		j.checkLinks("GetCluster links", c.GetLinks())
		// Sending back what was read changes nothing.
		c, r, err = j.api.ClustersApi.UpdateCluster(ctx, gid, rsName, c).Execute()
		if c = ok(j, "ClustersApi.UpdateCluster (as read)", 200, c, r, err); c != nil {
			j.check("UpdateCluster as read stays IDLE", c.GetStateName() == "IDLE", c.GetStateName())
		}
	}
	c, r, err = j.api.ClustersApi.UpdateCluster(ctx, gid, rsName,
		&admin.ClusterDescription20240805{EncryptionAtRestProvider: admin.PtrString("AWS")}).Execute()
	if c = ok(j, "ClustersApi.UpdateCluster (AWS provider)", 200, c, r, err); c != nil {
		j.check("UpdateCluster AWS provider", c.GetEncryptionAtRestProvider() == "AWS" && c.GetStateName() == "UPDATING",
			c.GetEncryptionAtRestProvider()+" "+c.GetStateName())
	}
	c, r, err = j.api.ClustersApi.GetCluster(ctx, gid, shName).Execute()
	if c = ok(j, "ClustersApi.GetCluster (sharded)", 200, c, r, err); c != nil {
		j.check("GetCluster sharded", c.GetClusterType() == "SHARDED" && len(c.GetReplicationSpecs()) == 2,
			fmt.Sprintf("%s with %d replication specs", c.GetClusterType(), len(c.GetReplicationSpecs())))
		c, r, err = j.api.ClustersApi.UpdateCluster(ctx, gid, shName, c).Execute()
		if c = ok(j, "ClustersApi.UpdateCluster (sharded, as read)", 200, c, r, err); c != nil {
			j.check("UpdateCluster sharded as read stays IDLE", c.GetStateName() == "IDLE", c.GetStateName())
		}
	}

	// Backup snapshots, taken through the control API with the key in force.
	j.sim("POST", "/__sim/projects/"+gid+"/clusters/"+rsName+"/snapshots", map[string]any{})
	j.sim("POST", "/__sim/projects/"+gid+"/clusters/"+shName+"/snapshots", map[string]any{"type": "shardedCluster"})
	rs, r, err := j.api.CloudBackupsApi.ListBackupSnapshots(ctx, gid, rsName).Execute()
	if rs = ok(j, "CloudBackupsApi.ListBackupSnapshots", 200, rs, r, err); rs != nil && len(rs.GetResults()) == 1 {
		s := rs.GetResults()[0]
		j.check("replica-set snapshot masterKeyUUID", s.GetMasterKeyUUID() == aw.keyID, s.GetMasterKeyUUID())
		one, r, err := j.api.CloudBackupsApi.GetClusterBackupSnapshot(ctx, gid, rsName, s.GetId()).Execute()
		ok(j, "CloudBackupsApi.GetClusterBackupSnapshot", 200, one, r, err)
	} else if rs != nil {
		j.check("ListBackupSnapshots", false, fmt.Sprintf("%d snapshots", len(rs.GetResults())))
	}
	sh, r, err := j.api.CloudBackupsApi.ListBackupShardedClusters(ctx, gid, shName).Execute()
	if sh = ok(j, "CloudBackupsApi.ListBackupShardedClusters", 200, sh, r, err); sh != nil && len(sh.GetResults()) == 1 {
		s := sh.GetResults()[0]
		one, r, err := j.api.CloudBackupsApi.GetBackupShardedCluster(ctx, gid, shName, s.GetId()).Execute()
		if one = ok(j, "CloudBackupsApi.GetBackupShardedCluster", 200, one, r, err); one != nil {
			j.check("sharded snapshot members", len(one.GetMembers()) == 2 && len(one.GetSnapshotIds()) == 2,
				fmt.Sprintf("%d members for 2 shards", len(one.GetMembers())))
		}
	} else if sh != nil {
		j.check("ListBackupShardedClusters", false, fmt.Sprintf("%d snapshots", len(sh.GetResults())))
	}

	// Control-plane IP addresses.
	ips, r, err := j.api.RootApi.ListControlPlaneAddresses(ctx).Execute()
	if ips = ok(j, "RootApi.ListControlPlaneAddresses", 200, ips, r, err); ips != nil {
		out := ips.GetOutbound()
		j.check("control-plane addresses", len(out.GetAws()) > 0, "no outbound AWS addresses")
	}

	// Error answers: 401, 404 and 409 (the 400 CANNOT_ASSUME_ROLE was judged above).
	j.unauthorized(ctx, gid)
	_, r, err = j.api.ClustersApi.GetCluster(ctx, gid, "NoSuchCluster").Execute()
	j.apiError("ClustersApi.GetCluster (unknown)", 404, "CLUSTER_NOT_FOUND", r, err)
	off := admin.EncryptionAtRest{AwsKms: &admin.AWSKMSConfiguration{Enabled: admin.PtrBool(false)}}
	_, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.UpdateEncryptionAtRest(ctx, gid, &off).Execute()
	j.apiError("EncryptionAtRestApi.UpdateEncryptionAtRest (disable)", 409, "CANNOT_DISABLE_ENCRYPTION_AT_REST", r, err)

	// Turning it off in Atlas's order: the cluster first, then (once the private endpoint is gone) the
	// project's configuration, then the role.
	c, r, err = j.api.ClustersApi.UpdateCluster(ctx, gid, rsName,
		&admin.ClusterDescription20240805{EncryptionAtRestProvider: admin.PtrString("NONE")}).Execute()
	if c = ok(j, "ClustersApi.UpdateCluster (NONE provider)", 200, c, r, err); c != nil {
		j.check("UpdateCluster NONE provider", c.GetEncryptionAtRestProvider() == "NONE", c.GetEncryptionAtRestProvider())
	}
	if peID != "" {
		_, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.UpdateEncryptionAtRest(ctx, gid, &off).Execute()
		j.apiError("EncryptionAtRestApi.UpdateEncryptionAtRest (disable)", 400,
			"CANNOT_DISABLE_ENCRYPTION_AT_REST_DUE_TO_PRIVATE_ENDPOINTS", r, err)
		// The endpoint is DELETING for the simulator's update delay, then gone.
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.GetRestPrivateEndpoint(ctx, gid, "AWS", peID).Execute()
			if statusOf(r) != 200 || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		j.apiError("EncryptionAtRestApi.GetRestPrivateEndpoint (deleted)", 404, "RESOURCE_NOT_FOUND", r, err)
	}
	ear, r, err = j.api.EncryptionAtRestUsingCustomerKeyManagementApi.UpdateEncryptionAtRest(ctx, gid, &off).Execute()
	if ear = ok(j, "EncryptionAtRestApi.UpdateEncryptionAtRest (disable)", 200, ear, r, err); ear != nil {
		k := ear.GetAwsKms()
		j.check("disabled EAR", !k.GetEnabled() && !k.HasCustomerMasterKeyID(), "configuration not erased")
	}
	r, err = j.api.CloudProviderAccessApi.DeauthorizeProviderAccessRole(ctx, gid, "AWS", roleID).Execute()
	j.noContent("CloudProviderAccessApi.DeauthorizeProviderAccessRole", 204, r, err)
	_, r, err = j.api.CloudProviderAccessApi.GetCloudProviderAccess(ctx, gid, roleID).Execute()
	j.apiError("CloudProviderAccessApi.GetCloudProviderAccess (deauthorized)", 404, "RESOURCE_NOT_FOUND", r, err)
}

// unauthorized judges a 401: a wrong private key (digest), or a token revoked through the SDK's own
// clientcredentials.Config.RevokeToken (service account).
func (j *judge) unauthorized(ctx context.Context, gid string) {
	hc := &http.Client{Transport: j.rec, Timeout: 30 * time.Second}
	if j.mode == "digest" {
		bad, err := admin.NewClient(admin.UseBaseURL(j.base),
			admin.UseHTTPClient(&http.Client{Transport: digestTransport(j.user, j.secret+"-wrong", j.rec)}))
		if err != nil {
			j.line("admin.NewClient", 0, false, err.Error())
			return
		}
		_, r, err := bad.ProjectsApi.GetGroup(ctx, gid).Execute()
		j.apiError("ProjectsApi.GetGroup (wrong private key)", 401, "USER_UNAUTHORIZED", r, err)
		return
	}
	conf := clientcredentials.NewConfig(j.user, j.secret)
	conf.TokenURL = j.base + clientcredentials.TokenAPIPath
	conf.RevokeURL = j.base + clientcredentials.RevokeAPIPath
	hctx := context.WithValue(ctx, auth.HTTPClient, hc)
	// Token and RevokeToken return no response; both fail on any status but 200, so success means 200.
	tok, err := conf.Token(hctx)
	if err != nil {
		j.line("clientcredentials.Config.Token", 0, false, err.Error())
		return
	}
	j.line("clientcredentials.Config.Token", 200, tok.Valid(), "")
	own, err := admin.NewClient(admin.UseBaseURL(j.base),
		admin.UseHTTPClient(oauth2.NewClient(hctx, oauth2.StaticTokenSource(tok))))
	if err != nil {
		j.line("admin.NewClient", 0, false, err.Error())
		return
	}
	g, r, err := own.ProjectsApi.GetGroup(ctx, gid).Execute()
	ok(j, "ProjectsApi.GetGroup (own token)", 200, g, r, err)
	if err := conf.RevokeToken(hctx, tok); err != nil {
		j.line("clientcredentials.Config.RevokeToken", 0, false, err.Error())
		return
	}
	j.line("clientcredentials.Config.RevokeToken", 200, true, "")
	_, r, err = own.ProjectsApi.GetGroup(ctx, gid).Execute()
	j.apiError("ProjectsApi.GetGroup (revoked token)", 401, "USER_UNAUTHORIZED", r, err)
}

// checkLinks: links must point at the server the client talks to, not at the real Atlas.
func (j *judge) checkLinks(op string, links []admin.Link) {
	for _, l := range links {
		j.check(op, strings.HasPrefix(l.GetHref(), j.base+"/"), l.GetHref())
	}
}

// digestTransport is what admin.UseDigestAuth builds, over the recorder.
func digestTransport(user, password string, base http.RoundTripper) http.RoundTripper {
	return digest.NewTransportWithHTTPRoundTripper(user, password, base)
}

// awsSide is the customer's account in moto.
type awsSide struct {
	kms      *kms.Client
	iam      *iam.Client
	name     string
	keyID    string
	keyArn   string
	roleArn  string
	roleName string
}

func newAWS(_ context.Context, endpoint, mode string) (*awsSide, error) {
	if endpoint == "" {
		return nil, errors.New("MOTO_ENDPOINT is not set")
	}
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	return &awsSide{
		kms:  kms.NewFromConfig(cfg),
		iam:  iam.NewFromConfig(cfg),
		name: fmt.Sprintf("sdk-judge-%s-%d", mode, time.Now().UnixNano()),
	}, nil
}

func trustPolicy(atlasArn, externalID string) string {
	doc := map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": atlasArn},
			"Action":    "sts:AssumeRole",
			"Condition": map[string]any{"StringEquals": map[string]any{"sts:ExternalId": externalID}},
		}},
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

func (a *awsSide) createKeyAndRole(ctx context.Context, atlasArn, externalID string) error {
	key, err := a.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(a.name)})
	if err != nil {
		return fmt.Errorf("kms CreateKey: %w", err)
	}
	a.keyID, a.keyArn = aws.ToString(key.KeyMetadata.KeyId), aws.ToString(key.KeyMetadata.Arn)
	role, err := a.iam.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName:                 aws.String(a.name),
		AssumeRolePolicyDocument: aws.String(trustPolicy(atlasArn, externalID)),
	})
	if err != nil {
		return fmt.Errorf("iam CreateRole: %w", err)
	}
	a.roleName, a.roleArn = a.name, aws.ToString(role.Role.Arn)
	policy, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Effect":   "Allow",
			"Action":   []string{"kms:DescribeKey", "kms:Encrypt", "kms:Decrypt"},
			"Resource": a.keyArn,
		}},
	})
	if _, err := a.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName:       aws.String(a.roleName),
		PolicyName:     aws.String("atlas-kms"),
		PolicyDocument: aws.String(string(policy)),
	}); err != nil {
		return fmt.Errorf("iam PutRolePolicy: %w", err)
	}
	return nil
}

func (a *awsSide) trust(ctx context.Context, atlasArn, externalID string) error {
	_, err := a.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{
		RoleName:       aws.String(a.roleName),
		PolicyDocument: aws.String(trustPolicy(atlasArn, externalID)),
	})
	return err
}
