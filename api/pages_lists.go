// The pages' plain lists — batches, runs, deliveries, suppressions, the
// audit log, users — are one kind of thing: a page of rows under the API's
// cursor, how many rows there are in all, and the whole list as CSV (for
// scripts: the API's field names and values) or XLSX (for people: Chinese
// headings and values), each download audited.
package api

import (
	"context"
	"fmt"
	"strconv"

	"github.com/labstack/echo/v4"

	"collider/casebook"
	"collider/feeds"
	"collider/jobs"
)

// pageList is one of the pages' lists.
type pageList[T any] struct {
	name    string // the download's file name
	title   string // the sheet's name
	columns []listColumn[T]
	page    func(ctx context.Context, cursor int64, limit int) ([]T, error)
	count   func(ctx context.Context) (int64, error)
	id      func(T) int64 // the cursor a row leaves
}

// listColumn is one column of a list's download; label, when given, says a
// machine value in Chinese in the XLSX.
type listColumn[T any] struct {
	casebook.TableColumn
	value func(T) any
	label func(string) string
}

func column[T any](name, heading string, kind casebook.CellKind, width float64, value func(T) any) listColumn[T] {
	return listColumn[T]{TableColumn: casebook.TableColumn{Name: name, SheetColumn: casebook.SheetColumn{Heading: heading, Kind: kind, Width: width}}, value: value}
}

func labelled[T any](name, heading string, width float64, value func(T) string, label func(string) string) listColumn[T] {
	c := column(name, heading, casebook.TextCell, width, func(r T) any { return value(r) })
	c.label = label
	return c
}

// labels says machine values in Chinese by a table of names.
func labels(names map[string]string) func(string) string {
	return func(v string) string { return label(names, v) }
}

// listPage is what a list's template gets.
type listPage[T any] struct {
	Rows   []T
	Total  int64
	Pager  pager
	Export string // the download's path, ?format=csv|xlsx to add
}

// read reads the page the URL's cursor names.
func (l pageList[T]) read(c echo.Context, export string) (listPage[T], error) {
	ctx := c.Request().Context()
	cursor, err := pageCursor(c)
	if err != nil {
		return listPage[T]{}, err
	}
	rows, err := l.page(ctx, cursor, pageSize)
	if err != nil {
		return listPage[T]{}, err
	}
	total, err := l.count(ctx)
	if err != nil {
		return listPage[T]{}, err
	}
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = l.id(r)
	}
	return listPage[T]{Rows: rows, Total: total, Pager: idPager(cursor, ids, pageSize), Export: export}, nil
}

// downloadList streams the whole list, page after page, as the format
// asks, and audits the download.
func downloadList[T any](s *Server, c echo.Context, l pageList[T]) error {
	format := c.QueryParam("format")
	if format == "" {
		format = "csv"
	}
	ctype, err := casebook.ContentType(format)
	if err != nil {
		return err
	}
	cols := make([]casebook.TableColumn, len(l.columns))
	for i, col := range l.columns {
		cols[i] = col.TableColumn
	}
	ctx, w := c.Request().Context(), c.Response()
	out, err := casebook.NewTableWriter(w, s.Casebook.TmpDir, format, l.title, cols)
	if err != nil {
		return err
	}
	defer out.Discard()
	w.Header().Set(echo.HeaderContentType, ctype)
	w.Header().Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s.%s"`, l.name, format))
	var n int64
	for cursor := int64(0); ; {
		rows, err := l.page(ctx, cursor, 1000)
		if err != nil {
			if n == 0 && !w.Committed {
				return err
			}
			s.Log.Warn("list download interrupted", "list", l.name, "err", err)
			return nil
		}
		for _, r := range rows {
			values := make([]any, len(l.columns))
			for i, col := range l.columns {
				values[i] = col.value(r)
				if v, ok := values[i].(string); ok && col.label != nil && format == "xlsx" {
					values[i] = col.label(v)
				}
			}
			if err := out.Add(values...); err != nil {
				return err
			}
			n++
		}
		if len(rows) < 1000 {
			break
		}
		cursor = l.id(rows[len(rows)-1])
	}
	if err := out.Close(); err != nil {
		s.Log.Warn("list download interrupted", "list", l.name, "err", err)
		return nil
	}
	return s.Casebook.Audit(context.WithoutCancel(ctx), user(c), "download", c.Request().URL.RequestURI(), n, "")
}

// The lists.

func (s *Server) batchList(c echo.Context) pageList[casebook.Batch] {
	u := user(c)
	return pageList[casebook.Batch]{name: "batches", title: "线索批次",
		page: func(ctx context.Context, cursor int64, limit int) ([]casebook.Batch, error) {
			return s.Casebook.Batches(ctx, u, cursor, limit)
		},
		count: func(ctx context.Context) (int64, error) { return s.Casebook.Count(ctx, "batches") },
		id:    func(b casebook.Batch) int64 { return b.ID },
		columns: []listColumn[casebook.Batch]{
			column("batch_id", "批次", casebook.IntCell, 6, func(b casebook.Batch) any { return b.ID }),
			column("run_id", "运行", casebook.IntCell, 6, func(b casebook.Batch) any { return b.RunID }),
			column("published_at", "发布时间", casebook.TimeCell, 17, func(b casebook.Batch) any { return b.PublishedAt }),
			column("clues", "线索", casebook.IntCell, 8, func(b casebook.Batch) any { return b.Clues }),
			column("persons", "参保人", casebook.IntCell, 8, func(b casebook.Batch) any { return b.Persons }),
			column("institutions", "机构", casebook.IntCell, 8, func(b casebook.Batch) any { return b.Institutions }),
			column("settlements", "结算", casebook.IntCell, 8, func(b casebook.Batch) any { return b.Settlements }),
			column("total_amount", "总金额（元）", casebook.AmountCell, 14, func(b casebook.Batch) any { return b.TotalAmount }),
			column("fund_amount", "基金支付（元）", casebook.AmountCell, 14, func(b casebook.Batch) any { return b.FundAmount }),
		}}
}

func (s *Server) runList(echo.Context) pageList[jobs.RunRecord] {
	return pageList[jobs.RunRecord]{name: "runs", title: "运行",
		page: func(ctx context.Context, cursor int64, limit int) ([]jobs.RunRecord, error) {
			r, err := s.runs()
			if err != nil {
				return nil, err
			}
			return r.List(ctx, cursor, limit)
		},
		count: func(ctx context.Context) (int64, error) {
			r, err := s.runs()
			if err != nil {
				return 0, err
			}
			return r.Count(ctx)
		},
		id: func(x jobs.RunRecord) int64 { return x.ID },
		columns: []listColumn[jobs.RunRecord]{
			column("run_id", "运行", casebook.IntCell, 6, func(x jobs.RunRecord) any { return x.ID }),
			labelled("trigger", "触发", 10, func(x jobs.RunRecord) string { return x.Trigger }, labels(triggerNames)),
			column("started_by", "发起人", casebook.TextCell, 12, func(x jobs.RunRecord) any { return x.StartedBy }),
			labelled("status", "状态", 10, func(x jobs.RunRecord) string { return x.Status }, labels(runStatusNames)),
			column("started_at", "开始", casebook.TimeCell, 17, func(x jobs.RunRecord) any { return x.StartedAt }),
			column("finished_at", "结束", casebook.TimeCell, 17, func(x jobs.RunRecord) any { return x.FinishedAt }),
			column("batch_id", "批次", casebook.IntCell, 6, func(x jobs.RunRecord) any { return x.BatchID }),
			column("error", "说明", casebook.TextCell, 40, func(x jobs.RunRecord) any { return x.Error }),
		}}
}

func feedTitle(f string) string {
	if c, err := feeds.Lookup(f); err == nil {
		return c.Title
	}
	return f
}

func (s *Server) deliveryList(echo.Context) pageList[jobs.DeliverySummary] {
	type d = jobs.DeliverySummary
	return pageList[d]{name: "deliveries", title: "数据交付", page: s.Ledger.Deliveries, count: s.Ledger.Count,
		id: func(x d) int64 { return x.ID },
		columns: []listColumn[d]{
			column("delivery_id", "交付", casebook.IntCell, 6, func(x d) any { return x.ID }),
			labelled("feed", "数据", 14, func(x d) string { return x.Feed }, feedTitle),
			column("name", "名称", casebook.TextCell, 24, func(x d) any { return x.Name }),
			column("sha256", "SHA-256", casebook.TextCell, 20, func(x d) any { return x.SHA256 }),
			labelled("status", "状态", 10, func(x d) string { return x.Status }, labels(runStatusNames)),
			column("files", "文件", casebook.IntCell, 6, func(x d) any { return x.Files }),
			column("rows", "读入行", casebook.IntCell, 10, func(x d) any { return x.Rows }),
			column("loaded", "装载", casebook.IntCell, 10, func(x d) any { return x.Loaded }),
			column("rejected", "拒收", casebook.IntCell, 8, func(x d) any { return x.Rejected }),
			column("replaced", "替换", casebook.IntCell, 8, func(x d) any { return x.Replaced }),
			column("started_at", "时间", casebook.TimeCell, 17, func(x d) any { return x.StartedAt }),
			column("seconds", "耗时（秒）", casebook.AmountCell, 10, func(x d) any { return x.Seconds }),
			column("error", "说明", casebook.TextCell, 40, func(x d) any { return x.Error }),
		}}
}

func (s *Server) suppressionList(c echo.Context) pageList[casebook.Suppression] {
	type x = casebook.Suppression
	u, titles := user(c), s.modelTitles()
	return pageList[x]{name: "suppressions", title: "白名单",
		page: func(ctx context.Context, cursor int64, limit int) ([]x, error) {
			return s.Casebook.Suppressions(ctx, u, cursor, limit)
		},
		count: func(ctx context.Context) (int64, error) { return s.Casebook.Count(ctx, "suppressions") },
		id:    func(r x) int64 { return r.ID },
		columns: []listColumn[x]{
			column("id", "编号", casebook.IntCell, 6, func(r x) any { return r.ID }),
			labelled("kind", "类型", 10, func(r x) string { return r.Kind }, labels(suppressionKinds)),
			labelled("model", "模型", 18, func(r x) string { return r.Model }, func(v string) string { return titleOf(titles, v) }),
			column("person_id", "身份证号", casebook.TextCell, 20, func(r x) any { return r.PersonID }),
			column("institution_id", "机构编码", casebook.TextCell, 14, func(r x) any { return r.InstitutionID }),
			column("reason", "理由", casebook.TextCell, 30, func(r x) any { return r.Reason }),
			column("created_by", "创建人", casebook.TextCell, 12, func(r x) any { return r.CreatedBy }),
			column("created_at", "创建时间", casebook.TimeCell, 17, func(r x) any { return r.CreatedAt }),
			column("expires_at", "到期", casebook.TimeCell, 17, func(r x) any { return r.ExpiresAt }),
			column("revoked_at", "撤销时间", casebook.TimeCell, 17, func(r x) any { return r.RevokedAt }),
			column("revoked_by", "撤销人", casebook.TextCell, 12, func(r x) any { return r.RevokedBy }),
			labelled("active", "状态", 8, func(r x) string { return strconv.FormatBool(r.Active) }, labels(activeNames)),
		}}
}

var activeNames = map[string]string{"true": "生效", "false": "失效"}

func (s *Server) auditList(echo.Context) pageList[casebook.AuditEntry] {
	type x = casebook.AuditEntry
	return pageList[x]{name: "audit", title: "审计日志", page: s.Casebook.AuditLog,
		count: func(ctx context.Context) (int64, error) { return s.Casebook.Count(ctx, "audit") },
		id:    func(r x) int64 { return r.ID },
		columns: []listColumn[x]{
			column("audit_id", "编号", casebook.IntCell, 8, func(r x) any { return r.ID }),
			column("at", "时间", casebook.TimeCell, 17, func(r x) any { return r.At }),
			column("user_id", "用户编号", casebook.IntCell, 8, func(r x) any { return r.UserID }),
			column("user_name", "用户", casebook.TextCell, 12, func(r x) any { return r.UserName }),
			labelled("role", "角色", 10, func(r x) string { return r.Role }, roleName),
			labelled("action", "操作", 12, func(r x) string { return r.Action }, labels(auditActions)),
			column("object", "对象", casebook.TextCell, 30, func(r x) any { return r.Object }),
			column("rows", "行数", casebook.IntCell, 8, func(r x) any { return r.Rows }),
			column("detail", "详情", casebook.TextCell, 40, func(r x) any { return r.Detail }),
		}}
}

func (s *Server) userList(echo.Context) pageList[casebook.User] {
	type x = casebook.User
	return pageList[x]{name: "users", title: "用户", page: s.Casebook.Users,
		count: func(ctx context.Context) (int64, error) { return s.Casebook.Count(ctx, "users") },
		id:    func(r x) int64 { return r.ID },
		columns: []listColumn[x]{
			column("id", "编号", casebook.IntCell, 6, func(r x) any { return r.ID }),
			column("name", "姓名/单位", casebook.TextCell, 16, func(r x) any { return r.Name }),
			labelled("role", "角色", 10, func(r x) string { return string(r.Role) }, roleName),
			labelled("city_code", "市州", 10, func(r x) string { return r.City }, cityName),
			column("created_at", "创建时间", casebook.TimeCell, 17, func(r x) any { return r.CreatedAt }),
			column("revoked_at", "注销时间", casebook.TimeCell, 17, func(r x) any { return r.RevokedAt }),
		}}
}

// listDownload is the handler of a list's download.
func listDownload[T any](s *Server, list func(echo.Context) pageList[T]) echo.HandlerFunc {
	return func(c echo.Context) error { return downloadList(s, c, list(c)) }
}
