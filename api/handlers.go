package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	cb "collider/casebook"
	"collider/domain"
	"collider/jobs"
	"collider/regions"
)

// page is the shape of every list: items and the cursor of the next page.
type page[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

func newPage[T any](items []T, limit int, cursorOf func(T) int64) page[T] {
	p := page[T]{Items: items}
	if len(items) > 0 && len(items) >= domain.PageLimit(limit) {
		c := strconv.FormatInt(cursorOf(items[len(items)-1]), 10)
		p.NextCursor = &c
	}
	return p
}

// queryInt reads an optional integer query parameter.
func queryInt(c echo.Context, name string) (int64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, domain.Errorf(domain.EINVALID, "%s must be a non-negative integer, got %q", name, v)
	}
	return n, nil
}

func pathID(c echo.Context) (int64, error) {
	n, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || n <= 0 {
		return 0, domain.Errorf(domain.EINVALID, "id must be a positive integer, got %q", c.Param("id"))
	}
	return n, nil
}

func pageParams(c echo.Context) (cursor int64, limit int, err error) {
	if cursor, err = queryInt(c, "cursor"); err != nil {
		return
	}
	l, err := queryInt(c, "limit")
	return cursor, int(l), err
}

func (s *Server) healthz(c echo.Context) error {
	if err := s.Store.DB.PingContext(c.Request().Context()); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) me(c echo.Context) error { return c.JSON(http.StatusOK, user(c)) }

func (s *Server) listBatches(c echo.Context) error {
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	items, err := s.Casebook.Batches(c.Request().Context(), user(c), cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(b cb.Batch) int64 { return b.ID }))
}

func (s *Server) getBatch(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	b, err := s.Casebook.Batch(c.Request().Context(), user(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, b)
}

// clueFilter reads the clue filters shared by lists and exports.
func clueFilter(c echo.Context) (cb.ClueFilter, error) {
	var f cb.ClueFilter
	var err error
	if f.Batch, err = queryInt(c, "batch"); err != nil {
		return f, err
	}
	f.Model, f.City, f.Severity, f.Status = c.QueryParam("model"), c.QueryParam("city"), c.QueryParam("severity"), c.QueryParam("status")
	if f.City != "" && !regions.IsCode(f.City) {
		return f, domain.Errorf(domain.EINVALID, "city must be a 6-digit code, got %q", f.City)
	}
	return f, checkText(f.Model, f.Status)
}

// checkText refuses filter values that are not UTF-8: DuckDB cannot bind
// them, which would otherwise be a 500.
func checkText(values ...string) error {
	for _, v := range values {
		if !utf8.ValidString(v) {
			return domain.Errorf(domain.EINVALID, "query parameters must be UTF-8 text, got %q", v)
		}
	}
	return nil
}

func (s *Server) listClues(c echo.Context) error {
	f, err := clueFilter(c)
	if err != nil {
		return err
	}
	if f.After, f.Limit, err = pageParams(c); err != nil {
		return err
	}
	items, err := s.Casebook.Clues(c.Request().Context(), user(c), f)
	if err != nil {
		return err
	}
	p := newPage(items, f.Limit, func(cl cb.Clue) int64 { return cl.ID })
	return writeJSON(c, http.StatusOK, p, func(b []byte) []byte {
		return appendPage(b, p, func(b []byte, cl *cb.Clue) []byte { return cl.AppendJSON(b) })
	})
}

func (s *Server) getClue(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	cl, err := s.Casebook.Clue(c.Request().Context(), user(c), id)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, cl, cl.AppendJSON)
}

func (s *Server) exportBatch(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	if _, err := s.Casebook.Batch(c.Request().Context(), user(c), id); err != nil {
		return err
	}
	f, err := clueFilter(c)
	if err != nil {
		return err
	}
	f.Batch = id
	return s.export(c, f, fmt.Sprintf("batch-%d", id))
}

func (s *Server) exportClues(c echo.Context) error {
	f, err := clueFilter(c)
	if err != nil {
		return err
	}
	return s.export(c, f, "clues")
}

// export streams a download; the casebook writes the audit line.
func (s *Server) export(c echo.Context, f cb.ClueFilter, name string) error {
	format := c.QueryParam("format")
	if format == "" {
		format = "csv"
	}
	ctype, err := cb.ContentType(format)
	if err != nil {
		return err
	}
	// Check the scope before the first byte is sent: afterwards an error
	// could no longer become a proper status.
	if _, err := s.Casebook.CountClues(c.Request().Context(), user(c), f); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, ctype)
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s.%s"`, name, format))
	c.Response().WriteHeader(http.StatusOK)
	_, err = s.Casebook.Export(c.Request().Context(), user(c), f, format, c.Response())
	if err != nil {
		s.Log.Warn("export interrupted", "name", name, "err", err)
	}
	return nil
}

func (s *Server) listLeads(c echo.Context) error {
	var f cb.LeadFilter
	var err error
	if f.After, f.Limit, err = pageParams(c); err != nil {
		return err
	}
	f.City, f.Status = c.QueryParam("city"), c.QueryParam("status")
	if f.City != "" && !regions.IsCode(f.City) {
		return domain.Errorf(domain.EINVALID, "city must be a 6-digit code, got %q", f.City)
	}
	if err := checkText(f.Status); err != nil {
		return err
	}
	switch c.QueryParam("overdue") {
	case "", "false":
	case "true":
		f.Overdue = true
	default:
		return domain.Errorf(domain.EINVALID, "overdue is true or false")
	}
	items, err := s.Casebook.Leads(c.Request().Context(), user(c), f)
	if err != nil {
		return err
	}
	if items == nil {
		items = []cb.Lead{}
	}
	p := newPage(items, f.Limit, func(l cb.Lead) int64 { return l.ID })
	return writeJSON(c, http.StatusOK, p, func(b []byte) []byte {
		return appendPage(b, p, func(b []byte, l *cb.Lead) []byte { return l.AppendJSON(b) })
	})
}

func (s *Server) getLead(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	l, err := s.Casebook.Lead(c.Request().Context(), user(c), id)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, l, l.AppendJSON)
}

func (s *Server) listEvents(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	ev, err := s.Casebook.Events(c.Request().Context(), user(c), id)
	if err != nil {
		return err
	}
	if ev == nil {
		ev = []cb.Event{}
	}
	return writeJSON(c, http.StatusOK, map[string]any{"items": ev}, func(b []byte) []byte {
		b = append(b, `{"items":[`...)
		for i := range ev {
			if i > 0 {
				b = append(b, ',')
			}
			b = ev[i].AppendJSON(b)
		}
		return append(b, "]}"...)
	})
}

func (s *Server) postEvent(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	var a cb.Action
	if err := bindJSON(c, &a); err != nil {
		return err
	}
	l, err := s.Casebook.Act(c.Request().Context(), user(c), id, a)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, l)
}

// bindJSON decodes a JSON body strictly: unknown fields and trailing data are errors.
func bindJSON(c echo.Context, v any) error {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" && !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return domain.Errorf(domain.EINVALID, "send a JSON body (Content-Type: application/json)")
	}
	dec := jsonDecoder(http.MaxBytesReader(c.Response(), req.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return domain.Errorf(domain.EINVALID, "bad JSON body: %v", err)
	}
	if dec.More() {
		return domain.Errorf(domain.EINVALID, "bad JSON body: more than one value")
	}
	return nil
}

func (s *Server) getMetrics(c echo.Context) error {
	m, err := s.Casebook.Metrics(c.Request().Context(), user(c), c.QueryParam("by"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": m})
}

func (s *Server) monthlyReport(c echo.Context) error {
	month := c.QueryParam("month")
	if month == "" {
		month = s.now().Format("2006-01")
	}
	if c.QueryParam("format") == "json" {
		rows, err := s.Casebook.MonthlyReport(c.Request().Context(), user(c), month)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"month": month, "items": rows})
	}
	if _, err := s.Casebook.MonthlyReport(c.Request().Context(), user(c), month); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="supervision-%s.xlsx"`, month))
	c.Response().WriteHeader(http.StatusOK)
	return s.Casebook.WriteReportXLSX(c.Request().Context(), user(c), month, cityNames(), c.Response())
}

func (s *Server) now() time.Time {
	if s.Casebook.Now != nil {
		return s.Casebook.Now()
	}
	return time.Now()
}

// cityNames names the cities of the shipped regions table.
func cityNames() map[string]string {
	out := map[string]string{}
	if t, err := regions.Shipped(); err == nil {
		for _, r := range t.All() {
			if r.Level == "city" || r.Level == "province" {
				out[r.Code] = r.Name
			}
		}
	}
	return out
}

func (s *Server) listDeliveries(c echo.Context) error {
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	// Asked for exactly the page newPage judges full (see listRuns).
	items, err := s.Ledger.Deliveries(c.Request().Context(), cursor, domain.PageLimit(limit))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(d jobs.DeliverySummary) int64 { return d.ID }))
}

func (s *Server) getDelivery(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	d, err := s.Ledger.Delivery(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (s *Server) deliveryRejects(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	_, err = s.Ledger.WriteRejects(c.Request().Context(), user(c), id, c.Response(), func() {
		h := c.Response().Header()
		h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="delivery-%d-rejects.csv"`, id))
		c.Response().WriteHeader(http.StatusOK)
	})
	if err != nil && !c.Response().Committed {
		return err
	}
	if err != nil {
		s.Log.Warn("rejects download interrupted", "delivery_id", id, "err", err)
	}
	return nil
}

func (s *Server) listUsers(c echo.Context) error {
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	us, err := s.Casebook.Users(c.Request().Context(), cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(us, limit, func(u cb.User) int64 { return u.ID }))
}

type newUser struct {
	Name string `json:"name"`
	Role string `json:"role"`
	City string `json:"city_code"`
}

func (s *Server) addUser(c echo.Context) error {
	var in newUser
	if err := bindJSON(c, &in); err != nil {
		return err
	}
	u, token, err := s.Casebook.AddUser(c.Request().Context(), in.Name, cb.Role(in.Role), in.City)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"user": u, "token": token})
}

func (s *Server) revokeUser(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	if err := s.Casebook.Revoke(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listAudit(c echo.Context) error {
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	items, err := s.Casebook.AuditLog(c.Request().Context(), cursor, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(items, limit, func(a cb.AuditEntry) int64 { return a.ID }))
}
