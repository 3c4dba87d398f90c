// This file declares what the pipeline tells an observer as it works: runs
// starting and finishing, each step's outcome, each delivery, the published
// batch, and the progress of the running step. The Prometheus series are an
// observer (package metrics); the pipeline does not know them.
package jobs

import "collider/casebook"

// Observer is told what the pipeline does, as it happens. Its methods are
// called on the run's goroutine and must return quickly; they are never
// called with a lock of the pipeline held.
type Observer interface {
	// RunStarted: a run began, started by trigger (schedule, api, cli).
	RunStarted(trigger string)
	// Progress: the running step changed or advanced.
	Progress(p Progress)
	// StepFinished: a step (discover, load, model, publish, route) ended
	// with its status (succeeded, failed), rows and seconds.
	StepFinished(step, status string, rows int64, seconds float64)
	// DeliveryFinished: a delivery the run found was loaded, failed or
	// skipped (not one whose load a cancelled run cut short).
	DeliveryFinished(r LoadResult)
	// Published: the run's batch was published from these model runs.
	Published(b casebook.Batch, models []casebook.ModelRun)
	// RunFinished: a run ended with its status (succeeded, partial, failed, interrupted).
	RunFinished(trigger, status string)
}

// nobody is the observer of a pipeline that has none.
type nobody struct{}

func (nobody) RunStarted(string)                             {}
func (nobody) Progress(Progress)                             {}
func (nobody) StepFinished(string, string, int64, float64)   {}
func (nobody) DeliveryFinished(LoadResult)                   {}
func (nobody) Published(casebook.Batch, []casebook.ModelRun) {}
func (nobody) RunFinished(string, string)                    {}

func (p *Pipeline) observer() Observer {
	if p.Observer == nil {
		return nobody{}
	}
	return p.Observer
}
