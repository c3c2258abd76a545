package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// Snapshot is one file written by tests/common/snapshots.rs.
type Snapshot struct {
	Test   string `json:"test"`
	Label  string `json:"label"`
	Expect struct {
		Kstatus string `json:"kstatus"`
		Argocd  string `json:"argocd"`
	} `json:"expect"`
	Object json.RawMessage `json:"object"`
}

// Row is one line of the report.
type Row struct {
	File       string
	Kind       string
	Generation string // "generation/observedGeneration"
	Lagging    bool
	Expected   string
	Got        string
	Message    string
	Err        error
}

func (r Row) OK() bool { return r.Err == nil && r.Expected == r.Got }

// Report is the outcome of checking one directory.
type Report struct{ Rows []Row }

// Requirements a directory must meet beyond every snapshot agreeing.
type Requirements struct {
	Min        int
	Names      []string // file names without .json that must be present
	RequireLag bool
}

var verdicts = map[string]status.Status{
	"Current":     status.CurrentStatus,
	"InProgress":  status.InProgressStatus,
	"Failed":      status.FailedStatus,
	"Terminating": status.TerminatingStatus,
}

// Evaluate computes kstatus for one snapshot's object.
func Evaluate(s *Snapshot) (*status.Result, *unstructured.Unstructured, error) {
	if len(s.Object) == 0 || string(s.Object) == "null" {
		return nil, nil, errors.New("no object")
	}
	if _, ok := verdicts[s.Expect.Kstatus]; !ok {
		return nil, nil, fmt.Errorf("expect.kstatus %q is not one of Current, InProgress, Failed, Terminating", s.Expect.Kstatus)
	}
	u := &unstructured.Unstructured{}
	// UnmarshalJSON keeps integers as int64, as the API machinery (and kstatus) expects them.
	if err := u.UnmarshalJSON(s.Object); err != nil {
		return nil, nil, fmt.Errorf("object: %w", err)
	}
	if u.GetKind() == "" || u.GetAPIVersion() == "" {
		return nil, nil, errors.New("object has no apiVersion/kind")
	}
	res, err := status.Compute(u)
	if err != nil {
		return nil, u, fmt.Errorf("kstatus: %w", err)
	}
	return res, u, nil
}

// CheckFile reads and evaluates one snapshot file.
func CheckFile(path string) Row {
	row := Row{File: filepath.Base(path)}
	data, err := os.ReadFile(path)
	if err != nil {
		row.Err = err
		return row
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		row.Err = fmt.Errorf("not a snapshot: %w", err)
		return row
	}
	row.Expected = s.Expect.Kstatus
	res, u, err := Evaluate(&s)
	if u != nil {
		row.Kind = u.GetKind()
		gen := u.GetGeneration()
		obs, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		if found {
			row.Generation = fmt.Sprintf("%d/%d", gen, obs)
			row.Lagging = obs < gen
		} else {
			row.Generation = fmt.Sprintf("%d/-", gen)
		}
	}
	if err != nil {
		row.Err = err
		return row
	}
	row.Got = string(res.Status)
	row.Message = res.Message
	return row
}

// CheckDir evaluates every *.json in dir. The error lists every problem; the report is returned
// whenever the directory could be read.
func CheckDir(dir string, req Requirements) (*Report, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("snapshot directory: %w", err)
	}
	sort.Strings(paths)
	report := &Report{}
	var problems []string
	present := map[string]bool{}
	lagging := 0
	for _, p := range paths {
		row := CheckFile(p)
		report.Rows = append(report.Rows, row)
		present[strings.TrimSuffix(row.File, ".json")] = true
		if row.Lagging {
			lagging++
		}
		switch {
		case row.Err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", row.File, row.Err))
		case !row.OK():
			problems = append(problems, fmt.Sprintf("%s: expected %s, kstatus computes %s (%s)", row.File, row.Expected, row.Got, row.Message))
		}
	}
	if len(paths) < req.Min {
		problems = append(problems, fmt.Sprintf("%s holds %d snapshot(s), at least %d expected: run the e2e tests first", dir, len(paths), req.Min))
	}
	var missing []string
	for _, n := range req.Names {
		if !present[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d expected snapshot(s) missing: %s", len(missing), strings.Join(missing, ", ")))
	}
	if req.RequireLag && lagging == 0 {
		problems = append(problems, "no snapshot has metadata.generation ahead of status.observedGeneration")
	}
	if len(problems) > 0 {
		return report, errors.New(strings.Join(problems, "\n  "))
	}
	return report, nil
}

// ReadNameList reads snapshot names, one per line; blank lines and # comments are skipped.
func ReadNameList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			names = append(names, strings.TrimSuffix(line, ".json"))
		}
	}
	return names, sc.Err()
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tKIND\tGEN/OBS\tEXPECT\tKSTATUS\tRESULT\tMESSAGE")
	for _, row := range r.Rows {
		result := "ok"
		if row.Err != nil {
			result = "ERROR"
		} else if !row.OK() {
			result = "MISMATCH"
		}
		msg := row.Message
		if row.Err != nil {
			msg = row.Err.Error()
		}
		if len(msg) > 70 {
			msg = msg[:67] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.TrimSuffix(row.File, ".json"), row.Kind, row.Generation, row.Expected, row.Got, result, msg)
	}
	tw.Flush()
}
