package models_test

import (
	"context"
	"strings"
	"testing"
)

// The shipped models' fixture cases, each a subtest named after the model
// and the behaviour it checks (every near-miss of the spec is one of them).
func TestEmbeddedModels_FixtureCasesPass(t *testing.T) {
	ms := embedded(t)
	verdicts, err := newTester(t).Validate(context.Background(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range verdicts {
		t.Run(v.Model.Name, func(t *testing.T) {
			if len(v.Cases) == 0 {
				t.Fatalf("refused before its cases ran: %v", v.Err)
			}
			for _, c := range v.Cases {
				t.Run(strings.ReplaceAll(c.Case, " ", "_"), func(t *testing.T) {
					if c.Err != nil {
						t.Error(c.Err)
					}
				})
			}
		})
	}
}
