// This file is the modelers' workbench (模型管理): the lifecycle of a model
// version. A modeler submits a draft (SQL and/or parameters) with a note;
// it is previewed in the sandbox and the preview is frozen with it. The
// province approves it — only when its fixture cases pass, and only when
// the live version is still the one it was submitted against — or rejects
// it with a reason. An approved version is live from the next run; any
// version that was live can be made live again in one step. The store's
// history decides what is live: the shipped models, a --models directory's
// files and submissions alike become versions in it, and a version goes
// live only by an approval (or, for a new shipped version, when the shipped
// one was live).
package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"collider/casebook"
	"collider/domain"
	"collider/models"
)

// Workbench runs the model lifecycle over the previewer's store, casebook
// and catalog.
type Workbench struct {
	Previewer *Previewer
	Log       *slog.Logger

	mu sync.Mutex // approvals and roll backs change the live catalog one at a time
}

// collider is who records the shipped versions.
var collider = casebook.User{Name: "collider", Role: casebook.RoleAdmin}

func (w *Workbench) log() *slog.Logger {
	if w.Log == nil {
		return slog.Default()
	}
	return w.Log
}

func (w *Workbench) cb() *casebook.Casebook { return w.Previewer.Casebook }
func (w *Workbench) cat() *models.Catalog   { return w.Previewer.Catalog }

// versionOf is a model's version with its own defaults.
func versionOf(m *models.Model) string {
	v, _ := m.Values(nil)
	return models.Version(m, v)
}

// Start records the shipped models' versions and makes live what the
// store's history says is live. A shipped version the store has not seen
// goes live when the shipped one was live (or none was); when the province
// had approved another, it waits for the province as a pending draft.
func (w *Workbench) Start(ctx context.Context, shipped []*models.Model) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	live, err := w.cb().LiveVersions(ctx)
	if err != nil {
		return err
	}
	for _, m := range shipped {
		v := versionOf(m)
		cur, isLive := live[m.Name]
		if isLive && cur.Version == v {
			continue
		}
		if _, known, err := w.cb().DraftOf(ctx, m.Name, v); err != nil {
			return err
		} else if known && isLive {
			continue
		}
		d := casebook.ModelDraft{Model: m.Name, Version: v, BaseVersion: cur.Version, Source: "shipped",
			Note: "随 collider 程序发布的版本", Status: casebook.DraftShipped, TestsPassed: true}
		d.Text, d.File, d.TestsFile, d.Tests = splitText(m)
		goLive := !isLive || cur.Action == "ship"
		if !goLive {
			d.Status, d.Note = casebook.DraftPending, "shipped with a newer collider; the live version is one the province approved"
		}
		if d, err = w.cb().AddDraft(ctx, collider, d, goLive); err != nil {
			return err
		}
		if goLive {
			live[m.Name] = casebook.LiveVersion{Model: m.Name, Version: v, DraftID: d.ID, Action: "ship"}
		}
	}
	for _, lv := range live {
		d, err := w.cb().Draft(ctx, lv.DraftID)
		if err != nil {
			return err
		}
		m, err := draftModel(d)
		if err != nil {
			return fmt.Errorf("live version of %s: %w", lv.Model, err)
		}
		w.cat().Set(m)
	}
	return nil
}

func splitText(m *models.Model) (text, file, testsFile, tests string) {
	t := TextOf(m)
	return t.Text, t.File, t.TestsFile, t.TestsText
}

// draftModel is the model a draft makes: its text with its parameters as
// the defaults, and its fixture cases.
func draftModel(d casebook.ModelDraft) (*models.Model, error) {
	m, err := ModelText{File: d.File, Text: d.Text, TestsFile: d.TestsFile, TestsText: d.Tests}.parse()
	if err != nil {
		return nil, err
	}
	if m, err = m.WithDefaults(d.Params); err != nil {
		return nil, err
	}
	if v := versionOf(m); v != d.Version {
		return nil, fmt.Errorf("draft %d: version %s, recorded as %s", d.ID, v[:12], d.Version[:12])
	}
	return m, nil
}

// Submission is a draft as a reader sees it, with its frozen preview.
type Submission struct {
	casebook.ModelDraft
	Preview *models.Preview `json:"preview,omitempty"`
}

// Submit previews a draft in the sandbox and records it, with its preview,
// as a pending version of the model.
func (w *Workbench) Submit(ctx context.Context, who casebook.User, req PreviewRequest, note, source string) (Submission, error) {
	note = strings.TrimSpace(note)
	if note == "" {
		return Submission{}, domain.Errorf(domain.EINVALID, "a submission needs a note: what the draft changes and why")
	}
	draft, live, err := w.Previewer.draftAndLive(req)
	if err != nil {
		return Submission{}, err
	}
	vals, err := draft.Values(req.Params)
	if err != nil {
		return Submission{}, domain.Errorf(domain.EINVALID, "%w", err)
	}
	version, liveVersion := models.Version(draft, vals), ""
	if live != nil {
		liveVersion = versionOf(live)
	}
	if version == liveVersion {
		return Submission{}, domain.Errorf(domain.ECONFLICT, "the draft is the live version %s: nothing to submit", version[:12])
	}
	if d, known, err := w.cb().DraftOf(ctx, req.Model, version); err != nil {
		return Submission{}, err
	} else if known && d.Status == casebook.DraftPending {
		return Submission{}, domain.Errorf(domain.ECONFLICT, "version %s is already submitted as draft %d, pending", version[:12], d.ID)
	}
	pv, err := w.Previewer.run(ctx, req)
	if err != nil {
		return Submission{}, err
	}
	frozen, err := json.Marshal(pv)
	if err != nil {
		return Submission{}, err
	}
	d := casebook.ModelDraft{Model: req.Model, Version: version, BaseVersion: liveVersion, Params: overrides(req.Params),
		Source: source, Note: note, Status: casebook.DraftPending, TestsPassed: testsPass(pv), Preview: frozen}
	d.Text, d.File, d.TestsFile, d.Tests = splitText(draft)
	if d, err = w.cb().AddDraft(ctx, who, d, false); err != nil {
		return Submission{}, err
	}
	w.log().Info("model draft submitted", "model", d.Model, "draft", d.ID, "version", d.Version[:12], "by", who.Name, "tests_passed", d.TestsPassed)
	detail := fmt.Sprintf("version %s, tests passed %t: %s", d.Version, d.TestsPassed, note)
	if err := w.cb().Audit(context.WithoutCancel(ctx), who, "submit", fmt.Sprintf("model %s draft %d", d.Model, d.ID), 1, detail); err != nil {
		return Submission{}, err
	}
	return w.present(ctx, who, d)
}

func overrides(p map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range p {
		out[k] = v
	}
	return out
}

// testsPass says whether every fixture case of the preview passed.
func testsPass(pv *models.Preview) bool {
	for _, c := range pv.Tests {
		if !c.Passed() {
			return false
		}
	}
	return true
}

// present shows a draft with its frozen preview as the reader may see it;
// a preview shown with people in clear is audited as a view.
func (w *Workbench) present(ctx context.Context, who casebook.User, d casebook.ModelDraft) (Submission, error) {
	s := Submission{ModelDraft: d}
	s.ModelDraft.Preview = nil
	if len(d.Preview) == 0 {
		return s, nil
	}
	var pv models.Preview
	if err := json.Unmarshal(d.Preview, &pv); err != nil {
		return s, fmt.Errorf("draft %d: preview: %w", d.ID, err)
	}
	shown, err := w.Previewer.Present(ctx, who, &pv)
	if err != nil {
		return s, err
	}
	s.Preview = shown
	if n := shownPeople(shown); !who.MasksPersonalData() && n > 0 {
		err = w.cb().Audit(context.WithoutCancel(ctx), who, "view", fmt.Sprintf("model %s draft %d preview", d.Model, d.ID), int64(n), "")
	}
	return s, err
}

// Draft returns one draft with its frozen preview.
func (w *Workbench) Draft(ctx context.Context, who casebook.User, id int64) (Submission, error) {
	d, err := w.cb().Draft(ctx, id)
	if err != nil {
		return Submission{}, err
	}
	return w.present(ctx, who, d)
}

// Drafts lists drafts (without their previews), newest first.
func (w *Workbench) Drafts(ctx context.Context, model, status string, before int64, limit int) ([]casebook.ModelDraft, error) {
	switch status {
	case "", casebook.DraftPending, casebook.DraftApproved, casebook.DraftRejected:
	default:
		return nil, domain.Errorf(domain.EINVALID, "status %q: pending, approved or rejected", status)
	}
	ds, err := w.cb().Drafts(ctx, model, status, before, limit)
	for i := range ds {
		ds[i].Preview = nil
	}
	return ds, err
}

// Approve makes a pending draft live from the next run. A draft whose
// fixture cases fail cannot be approved, and neither can one submitted
// against a live version that has changed since (ECONFLICT).
func (w *Workbench) Approve(ctx context.Context, who casebook.User, id int64, note string) (Submission, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m *models.Model
	d, err := w.cb().DecideDraft(ctx, who, id, casebook.DraftApproved, strings.TrimSpace(note), func(d casebook.ModelDraft) error {
		if !d.TestsPassed {
			return domain.Errorf(domain.ECONFLICT, "draft %d fails its fixture cases and cannot be approved; its author submits a corrected draft", d.ID)
		}
		current := ""
		if live, err := w.cat().Model(d.Model); err == nil {
			current = versionOf(live)
		}
		if current != d.BaseVersion {
			return domain.Errorf(domain.ECONFLICT, "the live version of %s changed since draft %d was submitted (from %s to %s); preview and submit it again",
				d.Model, d.ID, short(d.BaseVersion), short(current))
		}
		var err error
		m, err = draftModel(d)
		return err
	})
	if err != nil {
		return Submission{}, err
	}
	w.cat().Set(m)
	w.log().Info("model version approved", "model", d.Model, "draft", d.ID, "version", d.Version[:12], "by", who.Name)
	if err := w.cb().Audit(context.WithoutCancel(ctx), who, "approve", fmt.Sprintf("model %s draft %d", d.Model, d.ID), 1,
		fmt.Sprintf("version %s live from the next run: %s", d.Version, d.Decision)); err != nil {
		return Submission{}, err
	}
	return w.present(ctx, who, d)
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	if v == "" {
		return "none"
	}
	return v
}

// Reject turns a pending draft down with a reason.
func (w *Workbench) Reject(ctx context.Context, who casebook.User, id int64, reason string) (Submission, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return Submission{}, domain.Errorf(domain.EINVALID, "a rejection needs a reason")
	}
	d, err := w.cb().DecideDraft(ctx, who, id, casebook.DraftRejected, reason, func(casebook.ModelDraft) error { return nil })
	if err != nil {
		return Submission{}, err
	}
	if err := w.cb().Audit(context.WithoutCancel(ctx), who, "reject", fmt.Sprintf("model %s draft %d", d.Model, d.ID), 1,
		fmt.Sprintf("version %s: %s", d.Version, reason)); err != nil {
		return Submission{}, err
	}
	return w.present(ctx, who, d)
}

// Rollback makes a version that was live before live again, from the next
// run. version is the full hash or at least its first 12 characters.
func (w *Workbench) Rollback(ctx context.Context, who casebook.User, model, version, note string) (casebook.ModelEvent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	live, err := w.cat().Model(model)
	if err != nil {
		return casebook.ModelEvent{}, domain.Errorf(domain.ENOTFOUND, "%w", err)
	}
	full, err := w.resolve(ctx, model, version)
	if err != nil {
		return casebook.ModelEvent{}, err
	}
	if full == versionOf(live) {
		return casebook.ModelEvent{}, domain.Errorf(domain.ECONFLICT, "version %s of %s is the live one", full[:12], model)
	}
	draftID, ok, err := w.cb().WasLive(ctx, model, full)
	if err != nil {
		return casebook.ModelEvent{}, err
	}
	if !ok {
		return casebook.ModelEvent{}, domain.Errorf(domain.EINVALID, "version %s of %s was never live; approve a draft instead", full[:12], model)
	}
	d, err := w.cb().Draft(ctx, draftID)
	if err != nil {
		return casebook.ModelEvent{}, err
	}
	m, err := draftModel(d)
	if err != nil {
		return casebook.ModelEvent{}, err
	}
	if err := w.cb().MakeLive(ctx, who, model, full, draftID, strings.TrimSpace(note)); err != nil {
		return casebook.ModelEvent{}, err
	}
	w.cat().Set(m)
	w.log().Info("model version rolled back", "model", model, "version", full[:12], "by", who.Name)
	if err := w.cb().Audit(context.WithoutCancel(ctx), who, "rollback", "model "+model, 1,
		fmt.Sprintf("version %s live again from the next run: %s", full, note)); err != nil {
		return casebook.ModelEvent{}, err
	}
	hist, err := w.cb().ModelHistory(ctx, model, 0, 1)
	if err != nil || len(hist) == 0 {
		return casebook.ModelEvent{}, err
	}
	return hist[0], nil
}

// resolve finds the full version a prefix names in the model's history.
func (w *Workbench) resolve(ctx context.Context, model, prefix string) (string, error) {
	prefix = strings.TrimSpace(prefix)
	if len(prefix) < 12 {
		return "", domain.Errorf(domain.EINVALID, "version %q: give the version hash, at least its first 12 characters", prefix)
	}
	hist, err := w.cb().ModelHistory(ctx, model, 0, 1000)
	if err != nil {
		return "", err
	}
	found := ""
	for _, e := range hist {
		if strings.HasPrefix(e.Version, prefix) {
			if found != "" && found != e.Version {
				return "", domain.Errorf(domain.EINVALID, "version %q names more than one version of %s", prefix, model)
			}
			found = e.Version
		}
	}
	if found == "" {
		return "", domain.Errorf(domain.ENOTFOUND, "no version %s of %s", prefix, model)
	}
	return found, nil
}

// History lists a model's history, newest first.
func (w *Workbench) History(ctx context.Context, model string, before int64, limit int) ([]casebook.ModelEvent, error) {
	if _, err := w.cat().Model(model); err != nil {
		return nil, domain.Errorf(domain.ENOTFOUND, "%w", err)
	}
	return w.cb().ModelHistory(ctx, model, before, limit)
}

// SubmitFiles records the models of a --models directory that differ from
// the live versions as pending drafts (once per version): a file goes live
// only by an approval. Files that do not parse are the caller's to report.
func (w *Workbench) SubmitFiles(ctx context.Context, ms []*models.Model, dir string) ([]Submission, error) {
	var out []Submission
	who := casebook.User{Name: "models directory " + dir, Role: casebook.RoleModeler}
	for _, m := range ms {
		if live, err := w.cat().Model(m.Name); err == nil && versionOf(live) == versionOf(m) {
			continue
		}
		if _, known, err := w.cb().DraftOf(ctx, m.Name, versionOf(m)); err != nil {
			return out, err
		} else if known {
			continue
		}
		s, err := w.Submit(ctx, who, PreviewRequest{Model: m.Name, Draft: m}, "from "+dir+"/"+m.File, "file")
		if err != nil {
			return out, fmt.Errorf("%s: %w", m.File, err)
		}
		out = append(out, s)
	}
	return out, nil
}
