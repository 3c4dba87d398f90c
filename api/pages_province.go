// The province's pages: batches, the supervision board, runs with live
// progress, the delivery ledger, suppressions, the audit log and the
// monthly report.
package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/domain"
	"collider/jobs"
)

// pageCursor reads a list's cursor from the URL.
func pageCursor(c echo.Context) (int64, error) {
	v := c.QueryParam("cursor")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, domain.Errorf(domain.EINVALID, "cursor must be a number, got %q", v)
	}
	return n, nil
}

// idPager pages a list whose cursor is its last row's id.
func idPager(cursor int64, ids []int64, limit int) pager {
	p := pager{Query: url.Values{}}
	if cursor > 0 {
		p.Cursor = strconv.FormatInt(cursor, 10)
	}
	if len(ids) >= limit && len(ids) > 0 {
		p.Next = strconv.FormatInt(ids[len(ids)-1], 10)
	}
	return p
}

const pageSize = 50

func (s *Server) batchesPage(c echo.Context) error {
	l, err := s.batchList(c).read(c, "/batches/export")
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "batches", "线索批次", l)
}

type batchView struct {
	Batch                       casebook.Batch
	ByModel, BySeverity, ByCity []casebook.Breakdown
	Versions                    []casebook.ModelRun
	titles                      map[string]string
}

func (v batchView) ModelTitle(name string) string { return titleOf(v.titles, name) }

func (s *Server) batchPage(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ctx, u := c.Request().Context(), user(c)
	b, err := s.Casebook.Batch(ctx, u, id)
	if err != nil {
		return err
	}
	v := batchView{Batch: b, titles: s.modelTitles()}
	if v.ByModel, v.BySeverity, v.ByCity, err = s.Casebook.BatchBreakdowns(ctx, u, id); err != nil {
		return err
	}
	json.Unmarshal(b.Models, &v.Versions)
	return s.render(c, http.StatusOK, "batch", fmt.Sprintf("第 %d 批线索", id), v)
}

func (s *Server) batchExport(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	if _, err := s.Casebook.Batch(c.Request().Context(), user(c), id); err != nil {
		return err
	}
	return s.export(c, casebook.ClueFilter{Batch: id}, fmt.Sprintf("batch-%d", id))
}

type boardView struct {
	Cities                                                    []casebook.Metric
	Total                                                     casebook.Metric
	Month                                                     string
	IssuedChart, OverdueChart, RecoveredChart, PrecisionChart string
}

// boardPage is the supervision board (督办看板): per city, what was issued,
// accepted, closed, overdue, confirmed, dismissed, recovered, and the
// precision, as a table and as charts.
func (s *Server) boardPage(c echo.Context) error {
	ms, err := s.Casebook.Metrics(c.Request().Context(), user(c), "city")
	if err != nil {
		return err
	}
	v := boardView{Cities: ms, Month: s.now().Format("2006-01")}
	var issued, overdue, recovered, precision []bar
	for _, m := range ms {
		t := &v.Total
		t.Issued, t.Accepted, t.Closed, t.Overdue = t.Issued+m.Issued, t.Accepted+m.Accepted, t.Closed+m.Closed, t.Overdue+m.Overdue
		t.Confirmed, t.Dismissed, t.Referred, t.Recovered = t.Confirmed+m.Confirmed, t.Dismissed+m.Dismissed, t.Referred+m.Referred, t.Recovered+m.Recovered
		name := cityName(m.City)
		issued = append(issued, bar{Label: name, Value: float64(m.Issued), Inner: float64(m.Closed)})
		overdue = append(overdue, bar{Label: name, Value: float64(m.Overdue)})
		recovered = append(recovered, bar{Label: name, Value: m.Recovered})
		if m.Precision != nil {
			precision = append(precision, bar{Label: name, Value: *m.Precision * 100})
		}
	}
	if v.Total.Confirmed+v.Total.Dismissed > 0 {
		p := float64(v.Total.Confirmed) / float64(v.Total.Confirmed+v.Total.Dismissed)
		v.Total.Precision = &p
	}
	count := func(f float64) string { return grouped(f, 0) }
	v.IssuedChart = barChart("各市州下发与办结线索", issued, count, "已办结", "已下发")
	v.OverdueChart = barChart("各市州逾期未办结线索", overdue, count, "", "逾期")
	v.RecoveredChart = barChart("各市州追回金额（元）", recovered, func(f float64) string { return grouped(f, 2) }, "", "追回金额")
	v.PrecisionChart = barChart("各市州线索准确率（%）", precision, func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + "%" }, "", "属实 /（属实 + 排除）")
	return s.render(c, http.StatusOK, "board", "督办看板", v)
}

// monthlyReportDownload is the monthly supervision report (XLSX), as the
// API serves it.
func (s *Server) monthlyReportDownload(c echo.Context) error { return s.monthlyReport(c) }

type runsView struct {
	List  listPage[jobs.RunRecord]
	Error string
}

var triggerNames = map[string]string{"schedule": "定时", "api": "接口/页面", "cli": "命令行"}
var stepNames = map[string]string{"discover": "发现交付", "load": "装载", "sandbox": "沙箱数据", "scope": "确定复查范围", "model": "模型", "clues": "生成线索", "publish": "发布批次", "route": "下发市州"}

func (runsView) TriggerName(t string) string { return label(triggerNames, t) }
func (runsView) StepName(n string) string    { return label(stepNames, n) }

func (s *Server) runsPage(c echo.Context) error { return s.showRuns(c, http.StatusOK, "") }

func (s *Server) showRuns(c echo.Context, status int, msg string) error {
	l, err := s.runList(c).read(c, "/runs/export")
	if err != nil {
		return err
	}
	return s.render(c, status, "runs", "运行", runsView{List: l, Error: msg})
}

// startRunPage starts a run, as POST /api/v1/runs does; one already
// running is said on the runs page.
func (s *Server) startRunPage(c echo.Context) error {
	r, err := s.runs()
	if err != nil {
		return err
	}
	id, err := r.Start(c.Request().Context(), "api", user(c).Name)
	if domain.ErrorCode(err) == domain.ECONFLICT {
		return s.showRuns(c, http.StatusConflict, domain.ErrorMessage(err))
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, fmt.Sprintf("/runs/%d", id))
}

type runView struct {
	Run    jobs.RunRecord
	titles map[string]string
}

func (runView) TriggerName(t string) string { return label(triggerNames, t) }
func (runView) StepName(n string) string    { return label(stepNames, n) }

// StepDetail says what a step worked on in Chinese: a model's title, the
// leads routed to each city ("620100:5 620500:3"), a delivery or the inbox
// as they are named.
func (v runView) StepDetail(step, detail string) string {
	switch step {
	case "model":
		return titleOf(v.titles, detail)
	case "load":
		if feed, name, ok := strings.Cut(detail, "/"); ok {
			return feedTitle(feed) + " / " + name
		}
	case "route":
		var parts []string
		for _, p := range strings.Fields(detail) {
			city, n, ok := strings.Cut(p, ":")
			if !ok {
				return detail
			}
			parts = append(parts, fmt.Sprintf("%s %s 条", cityName(city), n))
		}
		return strings.Join(parts, "，")
	}
	return detail
}

// runPage shows a run; its JSON twin (?format=json) is what the page's
// script polls while the run is busy.
func (s *Server) runPage(c echo.Context) error {
	rec, err := s.runOf(c)
	if err != nil {
		return err
	}
	if c.QueryParam("format") == "json" {
		out := map[string]any{"run_id": rec.ID, "status": rec.Status, "status_name": label(runStatusNames, rec.Status)}
		if p := rec.Progress; p != nil {
			v := runView{titles: s.modelTitles()}
			out["progress"] = map[string]any{"step": p.Step, "step_name": label(stepNames, p.Step), "detail": v.StepDetail(p.Step, p.Detail), "percent": p.Percent}
		}
		return c.JSON(http.StatusOK, out)
	}
	return s.render(c, http.StatusOK, "run", fmt.Sprintf("运行 #%d", rec.ID), runView{Run: rec, titles: s.modelTitles()})
}

type deliveriesView struct {
	List listPage[jobs.DeliverySummary]
}

func (deliveriesView) FeedName(f string) string { return feedTitle(f) }

func (s *Server) deliveriesPage(c echo.Context) error {
	l, err := s.deliveryList(c).read(c, "/deliveries/export")
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "deliveries", "数据交付", deliveriesView{List: l})
}

func (s *Server) rejectsDownload(c echo.Context) error { return s.deliveryRejects(c) }

type suppressionsView struct {
	formState
	List   listPage[casebook.Suppression]
	Models []modelOption
	Kinds  []string
	titles map[string]string
}

var suppressionKinds = map[string]string{"person": "人员", "institution": "机构", "model_person": "模型与人员"}

func (suppressionsView) KindName(k string) string     { return label(suppressionKinds, k) }
func (v suppressionsView) ModelTitle(n string) string { return titleOf(v.titles, n) }
func (v suppressionsView) Value(field string) string  { return v.Values[field] }
func (v suppressionsView) Error(field string) string  { return v.Errors[field] }

func (s *Server) suppressionsPage(c echo.Context) error {
	return s.showSuppressions(c, http.StatusOK, formState{})
}

func (s *Server) showSuppressions(c echo.Context, status int, fs formState) error {
	l, err := s.suppressionList(c).read(c, "/suppressions/export")
	if err != nil {
		return err
	}
	return s.render(c, status, "suppressions", "白名单", suppressionsView{formState: fs, List: l, Models: s.modelOptions(),
		Kinds: []string{"person", "institution", "model_person"}, titles: s.modelTitles()})
}

func (s *Server) suppressPage(c echo.Context) error {
	fs := formState{Values: map[string]string{}, Errors: map[string]string{}}
	for _, k := range []string{"kind", "model", "person_id", "institution_id", "reason", "expires_at"} {
		fs.Values[k] = strings.TrimSpace(c.FormValue(k))
	}
	in := casebook.Suppression{Kind: fs.Values["kind"], Model: fs.Values["model"], PersonID: fs.Values["person_id"],
		InstitutionID: fs.Values["institution_id"], Reason: fs.Values["reason"]}
	if in.Reason == "" {
		fs.Errors["reason"] = "请填写理由。"
	}
	switch in.Kind {
	case "person", "model_person":
		in.InstitutionID = ""
		if in.PersonID == "" {
			fs.Errors["person_id"] = "请填写身份证号。"
		}
		if in.Kind == "model_person" && in.Model == "" {
			fs.Errors["model"] = "请选择模型。"
		}
		if in.Kind == "person" {
			in.Model = ""
		}
	case "institution":
		in.PersonID, in.Model = "", ""
		if in.InstitutionID == "" {
			fs.Errors["institution_id"] = "请填写机构编码。"
		}
	}
	if v := fs.Values["expires_at"]; v != "" {
		t, err := time.ParseInLocation("2006-01-02", v, domain.ChinaTime)
		if err != nil {
			fs.Errors["expires_at"] = "日期格式应为 2025-12-31。"
		}
		in.ExpiresAt = &t
	}
	if len(fs.Errors) == 0 {
		_, err := s.Casebook.Suppress(c.Request().Context(), user(c), in)
		if err == nil {
			return c.Redirect(http.StatusSeeOther, "/suppressions")
		}
		if code := domain.ErrorCode(err); code != domain.EINVALID && code != domain.ECONFLICT {
			return err
		}
		fs.Errors[""] = domain.ErrorMessage(err)
	}
	return s.showSuppressions(c, http.StatusBadRequest, fs)
}

func (s *Server) revokeSuppressionPage(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	if _, err := s.Casebook.RevokeSuppression(c.Request().Context(), user(c), id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/suppressions")
}

type auditView struct {
	List listPage[casebook.AuditEntry]
}

var auditActions = map[string]string{"view": "查看个人信息", "download": "下载", "draft": "草稿预览", "suppress": "新增白名单", "unsuppress": "撤销白名单",
	"submit": "提交模型", "approve": "批准模型", "reject": "驳回模型", "rollback": "回退模型", "backup": "备份"}

func (auditView) AuditAction(a string) string { return label(auditActions, a) }

func (s *Server) auditPage(c echo.Context) error {
	l, err := s.auditList(c).read(c, "/audit/export")
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "audit", "审计日志", auditView{List: l})
}
