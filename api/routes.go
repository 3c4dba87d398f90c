package api

import (
	cb "collider/casebook"
)

// routes lists every route of the server, in one place. Each /api/v1 route
// is documented in openapi.json; a test checks the two agree.
func (s *Server) routes() {
	e := s.Echo
	e.GET("/healthz", s.healthz)
	e.GET("/metrics", s.prometheusHandler())
	e.GET("/api/v1/openapi.json", s.openAPI)

	all := []cb.Role{cb.RoleProvince, cb.RoleCity, cb.RoleModeler, cb.RoleAdmin}
	casework := []cb.Role{cb.RoleProvince, cb.RoleCity}
	v1 := e.Group("/api/v1", s.authenticate)
	v1.GET("/me", s.me, allow(all...))

	v1.GET("/batches", s.listBatches, allow(all...))
	v1.GET("/batches/:id", s.getBatch, allow(all...))
	v1.GET("/batches/:id/export", s.exportBatch, allow(all...))

	v1.GET("/clues", s.listClues, allow(all...))
	v1.GET("/clues/export", s.exportClues, allow(all...))
	v1.GET("/clues/:id", s.getClue, allow(all...))

	v1.GET("/leads", s.listLeads, allow(casework...))
	v1.GET("/leads/:id", s.getLead, allow(casework...))
	v1.GET("/leads/:id/events", s.listEvents, allow(casework...))
	v1.POST("/leads/:id/events", s.postEvent, allow(casework...))

	v1.GET("/metrics", s.getMetrics, allow(all...))
	v1.GET("/reports/monthly", s.monthlyReport, allow(casework...))

	v1.GET("/deliveries", s.listDeliveries, allow(cb.RoleProvince, cb.RoleAdmin))
	v1.GET("/deliveries/:id", s.getDelivery, allow(cb.RoleProvince, cb.RoleAdmin))
	v1.GET("/deliveries/:id/rejects.csv", s.deliveryRejects, allow(cb.RoleProvince, cb.RoleAdmin))

	v1.GET("/users", s.listUsers, allow(cb.RoleAdmin))
	v1.POST("/users", s.addUser, allow(cb.RoleAdmin))
	v1.DELETE("/users/:id", s.revokeUser, allow(cb.RoleAdmin))
	v1.GET("/audit", s.listAudit, allow(cb.RoleProvince, cb.RoleAdmin))

	s.modelRoutes(v1)
	s.runRoutes(v1)
	s.adminRoutes(v1)
	s.pageRoutes()
}
