// This file is the web pages' frame: the embedded templates and assets
// (html/template and go:embed, no build step, nothing from another host),
// the rendering of a page inside the layout, the error pages, and the
// formatting every page shares — Chinese labels, China time, amounts as
// 12,345.67 元. Each page is a thin view over the same services as the API
// (casebook, jobs), so scope, masking and audit are the services'.
package api

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/domain"
	"collider/regions"
)

//go:embed web
var webFiles embed.FS

// pageError is an error a page shows as a page of its own.
type pageError struct {
	Status         int
	Title, Message string
}

func (e *pageError) Error() string { return e.Message }

// view is what every page template gets.
type view struct {
	Title  string
	User   casebook.User
	CSRF   string
	Active string // the nav entry to highlight: the first path segment
	Data   any
}

// templates are parsed once: each page with the layout.
type templates map[string]*template.Template

func parseTemplates() (templates, error) {
	sub, err := fs.Sub(webFiles, "web/templates")
	if err != nil {
		return nil, err
	}
	layout, err := template.New("layout.html").Funcs(pageFuncs).ParseFS(sub, "layout.html", "parts.html")
	if err != nil {
		return nil, err
	}
	pages, err := fs.Glob(sub, "*.html")
	if err != nil {
		return nil, err
	}
	out := templates{}
	for _, p := range pages {
		if p == "layout.html" || p == "parts.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(sub, p)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", p, err)
		}
		out[strings.TrimSuffix(p, ".html")] = t
	}
	return out, nil
}

// render writes a page inside the layout; a template error is a 500, not
// half a page: the page is rendered into a buffer first.
func (s *Server) render(c echo.Context, status int, name, title string, data any) error {
	t, ok := s.pages[name]
	if !ok {
		return fmt.Errorf("no page template %q", name)
	}
	v := view{Title: title, User: user(c), Data: data, Active: strings.SplitN(strings.TrimPrefix(c.Path(), "/"), "/", 2)[0]}
	if sess := currentSession(c); sess != nil {
		v.CSRF = sess.csrf
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		return fmt.Errorf("page %s: %w", name, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store") // pages hold personal data
	return c.HTMLBlob(status, buf.Bytes())
}

// isPage says whether a request is for a page (not the API, health or metrics).
func isPage(path string) bool {
	return !strings.HasPrefix(path, "/api/") && path != "/healthz" && path != "/metrics"
}

// pageErrorOf turns any error into what its page says: the same codes as
// the API's, in Chinese.
func pageErrorOf(err error) *pageError {
	var pe *pageError
	if errors.As(err, &pe) {
		return pe
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			return &pageError{Status: http.StatusNotFound, Title: "页面不存在", Message: "没有这个页面。"}
		}
		return &pageError{Status: he.Code, Title: http.StatusText(he.Code), Message: fmt.Sprint(he.Message)}
	}
	switch domain.ErrorCode(err) {
	case domain.ENOTFOUND:
		return &pageError{Status: http.StatusNotFound, Title: "未找到", Message: "没有找到要查看的内容，或者它不在您的权限范围内。"}
	case domain.EFORBIDDEN:
		return &pageError{Status: http.StatusForbidden, Title: "无权访问", Message: "这个页面不属于您的角色，请回到首页。"}
	case domain.EINVALID:
		return &pageError{Status: http.StatusBadRequest, Title: "请求有误", Message: domain.ErrorMessage(err)}
	case domain.ECONFLICT:
		return &pageError{Status: http.StatusConflict, Title: "无法执行", Message: domain.ErrorMessage(err)}
	case domain.EUNAUTHORIZED:
		return &pageError{Status: http.StatusUnauthorized, Title: "请重新登录", Message: "您的登录已失效。"}
	}
	return &pageError{Status: http.StatusInternalServerError, Title: "服务器错误", Message: "服务器出了问题，已记录。请稍后重试。"}
}

// pageErrorPage renders an error as a page.
func (s *Server) pageErrorPage(c echo.Context, err error) {
	pe := pageErrorOf(err)
	if pe.Status >= 500 {
		s.Log.Error("page failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if rerr := s.render(c, pe.Status, "error", pe.Title, pe); rerr != nil {
		s.Log.Error("error page failed", "err", rerr)
		c.String(pe.Status, pe.Message)
	}
}

// pageRoutes registers the pages; routes.go calls it.
func (s *Server) pageRoutes() {
	e := s.Echo
	static, _ := fs.Sub(webFiles, "web/static")
	e.GET("/static/*", echo.WrapHandler(http.StripPrefix("/static/", staticHandler(static))))
	e.GET("/login", s.loginPage)
	e.POST("/login", s.login)

	p := e.Group("", s.pageSession, csrfChecked)
	p.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusSeeOther, homeOf(user(c).Role)) })
	p.POST("/logout", s.logout)
	casework := allow(casebook.RoleCity, casebook.RoleProvince)
	province := allow(casebook.RoleProvince)
	modelRoom := allow(casebook.RoleProvince, casebook.RoleModeler)
	p.GET("/leads", s.leadsPage, casework)
	p.GET("/leads/export", s.leadsExport, casework)
	p.GET("/leads/:id", s.leadPage, casework)
	p.POST("/leads/:id", s.leadAct, casework)
	p.GET("/batches/export", listDownload(s, s.batchList), province)
	p.GET("/batches", s.batchesPage, province)
	p.GET("/batches/:id", s.batchPage, province)
	p.GET("/batches/:id/export", s.batchExport, province)
	p.GET("/board", s.boardPage, province)
	p.GET("/overdue", s.overduePage, province)
	p.GET("/returned", s.returnedPage, province)
	p.POST("/returned/:id", s.reassign, province)
	p.GET("/runs/export", listDownload(s, s.runList), province)
	p.GET("/runs", s.runsPage, province)
	p.POST("/runs", s.startRunPage, province)
	p.GET("/runs/:id", s.runPage, province)
	p.GET("/deliveries/export", listDownload(s, s.deliveryList), province)
	p.GET("/deliveries", s.deliveriesPage, province)
	p.GET("/deliveries/:id/rejects.csv", s.rejectsDownload, province)
	p.GET("/suppressions/export", listDownload(s, s.suppressionList), province)
	p.GET("/suppressions", s.suppressionsPage, province)
	p.POST("/suppressions", s.suppressPage, province)
	p.POST("/suppressions/:id/revoke", s.revokeSuppressionPage, province)
	p.GET("/audit/export", listDownload(s, s.auditList), province)
	p.GET("/audit", s.auditPage, province)
	p.GET("/reports/monthly", s.monthlyReportDownload, province)
	p.GET("/models", s.modelsPage, modelRoom)
	p.GET("/models/:name", s.modelPage, modelRoom)
	p.POST("/models/:name/preview", s.modelPreviewPage, modelRoom)
	p.POST("/models/:name/submit", s.modelSubmitPage, modelRoom)
	p.POST("/models/:name/rollback", s.modelRollbackPage, province)
	p.POST("/drafts/:id/decide", s.draftDecidePage, province)
	p.GET("/users", s.usersPage, allow(casebook.RoleAdmin))
	p.GET("/users/export", listDownload(s, s.userList), allow(casebook.RoleAdmin))
	p.POST("/users", s.addUserPage, allow(casebook.RoleAdmin))
	p.POST("/users/:id/revoke", s.revokeUserPage, allow(casebook.RoleAdmin))
}

// staticHandler serves the embedded assets, cached for a day.
func staticHandler(fsys fs.FS) http.Handler {
	files := http.FileServer(http.FS(fsys))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}

// Labels, in the words the bureaus use.
var (
	statusNames   = map[string]string{"new": "待签收", "accepted": "已签收", "investigating": "核查中", "returned": "已退回", "closed": "已办结"}
	outcomeNames  = map[string]string{"confirmed": "属实", "dismissed": "排除", "referred": "移送"}
	severityNames = map[string]string{"high": "高", "medium": "中", "low": "低"}
	roleNames     = map[string]string{"province": "省级专班", "city": "市州医保局", "modeler": "建模人员", "admin": "运维"}
	actionNames   = map[string]string{"route": "下发", "accept": "签收", "investigate": "核查", "close": "结案", "return": "退回", "reassign": "改派",
		"ship": "随版本发布", "submit": "提交", "approve": "批准", "reject": "驳回", "rollback": "回退"}
	visitNames  = map[string]string{"inpatient": "住院", "outpatient": "门诊", "pharmacy": "药店购药"}
	recordNames = map[string]string{"hotel": "旅馆住宿", "rail": "铁路出行", "flight": "航班出行", "custody": "羁押", "abroad": "出境",
		"floating": "流动人口登记", "civil_status": "生存状态", "hukou": "户籍"}
	runStatusNames = map[string]string{"running": "运行中", "succeeded": "成功", "partial": "部分成功", "failed": "失败", "interrupted": "已中断",
		"skipped": "跳过", "loaded": "已装载"}
	draftStatusNames = map[string]string{"pending": "待审批", "approved": "已批准", "rejected": "已驳回", "shipped": "随版本发布"}
	// evidenceNames label the evidence the shipped models write.
	evidenceNames = map[string]string{"death_date": "死亡日期", "days_after_death": "死亡后天数", "cancelled_date": "户籍注销日期",
		"days_after_cancelled": "注销后天数", "visit_date": "就诊日期", "distance_km": "距离（公里）", "hours_apart": "相隔小时",
		"speed_kmh": "所需时速（公里/小时）", "record_kind": "记录类型", "record_time": "记录时间", "event_id": "公安记录编号",
		"place": "地点", "start_time": "开始时间", "end_time": "结束时间", "hukou_region": "户籍地", "hukou_place": "户籍地",
		"nearest_record": "最近行程记录", "other_institution_id": "重叠机构编码", "other_institution_name": "重叠机构",
		"other_settlement_id": "重叠结算号", "overlap_hours": "重叠小时", "id_region": "身份证地址码", "birth_year": "出生年份",
		"sex": "性别", "insured_region": "参保地",
		"id_birth_date": "身份证出生日期", "residents_record": "公安户籍记录", "civil_status_record": "公安生存状态记录",
		"custody_start": "羁押开始", "custody_end": "羁押结束", "abroad_start": "出境时间", "abroad_end": "入境时间",
		"repeat_purchases": "同店重复购药次数", "presence_days": "前后天数", "floating_region": "流动人口登记地"}
)

func label(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return k
}

func roleName(r string) string { return label(roleNames, r) }

var cityNamesOnce = cityNames()

// cityName names a city (or the province) by its code.
func cityName(code string) string {
	if n, ok := cityNamesOnce[code]; ok {
		return n
	}
	if t, err := regions.Shipped(); err == nil {
		if r, ok := t.Lookup(code); ok {
			return r.Name
		}
	}
	return code
}

// yuan writes an amount as 12,345.67 元.
func yuan(v float64) string { return grouped(v, 2) + " 元" }

// grouped writes a number with thousands separators and d decimals.
func grouped(v float64, d int) string {
	neg := v < 0
	s := strconv.FormatFloat(math.Abs(v), 'f', d, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func chinaTime(t time.Time) time.Time {
	if t.Location() == domain.ChinaTime {
		return t
	}
	return t.In(domain.ChinaTime)
}

var pageFuncs = template.FuncMap{
	"yuan": yuan,
	"yuanp": func(v *float64) string {
		if v == nil {
			return "—"
		}
		return yuan(*v)
	},
	"num": func(v any) string {
		switch n := v.(type) {
		case int64:
			return grouped(float64(n), 0)
		case int:
			return grouped(float64(n), 0)
		case float64:
			return grouped(n, 0)
		}
		return fmt.Sprint(v)
	},
	"dt": func(t any) string {
		switch x := t.(type) {
		case time.Time:
			if x.IsZero() {
				return "—"
			}
			return chinaTime(x).Format("2006-01-02 15:04")
		case *time.Time:
			if x == nil {
				return "—"
			}
			return chinaTime(*x).Format("2006-01-02 15:04")
		}
		return "—"
	},
	"date": func(t any) string {
		switch x := t.(type) {
		case time.Time:
			return chinaTime(x).Format("2006-01-02")
		case *time.Time:
			if x == nil {
				return "—"
			}
			return chinaTime(*x).Format("2006-01-02")
		case string:
			return x
		}
		return "—"
	},
	"pct": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return strconv.FormatFloat(*p*100, 'f', 1, 64) + "%"
	},
	"statusName":    func(s string) string { return label(statusNames, s) },
	"outcomeName":   func(s string) string { return label(outcomeNames, s) },
	"severityName":  func(s string) string { return label(severityNames, s) },
	"roleName":      roleName,
	"actionName":    func(s string) string { return label(actionNames, s) },
	"visitName":     func(s string) string { return label(visitNames, s) },
	"recordName":    func(s string) string { return label(recordNames, s) },
	"runStatusName": func(s string) string { return label(runStatusNames, s) },
	"draftStatus":   func(s string) string { return label(draftStatusNames, s) },
	"evidenceName":  func(s string) string { return label(evidenceNames, s) },
	"cityName":      cityName,
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	// qs builds a query string: the base values with pairs replaced.
	"qs": func(base url.Values, kv ...string) template.URL {
		q := url.Values{}
		for k, v := range base {
			q[k] = append([]string(nil), v...)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				q.Del(kv[i])
			} else {
				q.Set(kv[i], kv[i+1])
			}
		}
		if len(q) == 0 {
			return "?"
		}
		return template.URL("?" + q.Encode())
	},
	"add": func(a, b int) int { return a + b },
	"deref": func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	},
	"deref64": func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	},
	"svg":  func(s string) template.HTML { return template.HTML(s) }, // charts are drawn by the server (charts.go)
	"json": func(b []byte) string { return string(b) },
}
