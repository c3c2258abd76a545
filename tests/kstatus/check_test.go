package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// The committed fixtures are snapshots copied from a real e2e run (tests/common/snapshots.rs), so the
// checker has inputs without a control plane.
const fixtures = "testdata"

func readSnapshot(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func writeSnapshot(t *testing.T, dir, name string, doc map[string]any) {
	t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFixturesAgreeWithKstatus(t *testing.T) {
	report, err := CheckDir(fixtures, Requirements{Min: 8, RequireLag: true})
	if report != nil {
		var b strings.Builder
		report.Print(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	kinds := map[string]bool{}
	for _, row := range report.Rows {
		seen[row.Got]++
		kinds[row.Kind] = true
	}
	for _, want := range []string{"Current", "InProgress", "Failed", "Terminating"} {
		if seen[want] == 0 {
			t.Errorf("no fixture where kstatus computes %s: %v", want, seen)
		}
	}
	for _, kind := range []string{"ProjectEncryption", "ClusterEncryption"} {
		if !kinds[kind] {
			t.Errorf("no %s fixture", kind)
		}
	}
}

// The checker must be able to fail: a wrong expectation on a real object is reported as a mismatch.
func TestAWrongExpectationIsReported(t *testing.T) {
	dir := t.TempDir()
	doc := readSnapshot(t, "pe-fresh-ready")
	doc["expect"].(map[string]any)["kstatus"] = "Failed"
	writeSnapshot(t, dir, "pe-fresh-ready", doc)
	report, err := CheckDir(dir, Requirements{Min: 1})
	if err == nil {
		t.Fatal("a Ready object expected Failed passed")
	}
	if !strings.Contains(err.Error(), "expected Failed, kstatus computes Current") {
		t.Fatalf("unhelpful error: %v", err)
	}
	if len(report.Rows) != 1 || report.Rows[0].OK() {
		t.Fatalf("report: %+v", report.Rows)
	}
}

// An empty directory, a missing listed snapshot, or no generation-lag snapshot cannot pass.
func TestMissingSnapshotsFail(t *testing.T) {
	empty := t.TempDir()
	if _, err := CheckDir(empty, Requirements{Min: 1}); err == nil || !strings.Contains(err.Error(), "holds 0 snapshot(s)") {
		t.Fatalf("empty directory: %v", err)
	}
	if _, err := CheckDir(filepath.Join(empty, "nope"), Requirements{}); err == nil {
		t.Fatal("a missing directory passed")
	}
	dir := t.TempDir()
	writeSnapshot(t, dir, "pe-fresh-ready", readSnapshot(t, "pe-fresh-ready"))
	_, err := CheckDir(dir, Requirements{Min: 1, Names: []string{"pe-fresh-ready", "ce-wait-ready"}, RequireLag: true})
	if err == nil {
		t.Fatal("missing ce-wait-ready passed")
	}
	for _, want := range []string{"1 expected snapshot(s) missing: ce-wait-ready", "no snapshot has metadata.generation ahead"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestMalformedSnapshotsFail(t *testing.T) {
	dir := t.TempDir()
	bad := readSnapshot(t, "pe-fresh-ready")
	bad["expect"].(map[string]any)["kstatus"] = "Healthy" // an Argo CD word, not a kstatus one
	writeSnapshot(t, dir, "bad-verdict", bad)
	writeSnapshot(t, dir, "no-object", map[string]any{"expect": map[string]any{"kstatus": "Current"}})
	if err := os.WriteFile(filepath.Join(dir, "not-json.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := CheckDir(dir, Requirements{})
	if err == nil {
		t.Fatal("malformed snapshots passed")
	}
	for _, want := range []string{"bad-verdict.json: expect.kstatus \"Healthy\"", "no-object.json: no object", "not-json.json: not a snapshot"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// Derived, on top of the real rotation-applied fixture: the Ready object with its generation bumped is
// InProgress whatever its conditions say, which is what Flux waits on after a spec change.
func TestAnUnobservedGenerationIsInProgress(t *testing.T) {
	doc := readSnapshot(t, "ce-wait-ready")
	raw, _ := json.Marshal(doc["object"])
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		t.Fatal(err)
	}
	if res, err := status.Compute(u); err != nil || res.Status != status.CurrentStatus {
		t.Fatalf("the Ready fixture: %v %v", res, err)
	}
	u.SetGeneration(u.GetGeneration() + 1)
	res, err := status.Compute(u)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != status.InProgressStatus || !strings.Contains(res.Message, "latest observed generation") {
		t.Fatalf("generation ahead: %s %q", res.Status, res.Message)
	}
}

// kstatus takes an object without conditions for done: the created-no-status fixture is Current. The
// Argo CD check (config/argocd/health.lua) says Progressing for it; docs/gitops.md explains the gap.
func TestNoStatusYetIsCurrentForKstatus(t *testing.T) {
	row := CheckFile(filepath.Join(fixtures, "pe-duplicate-created-no-status.json"))
	if row.Err != nil || row.Got != "Current" {
		t.Fatalf("%+v", row)
	}
}
