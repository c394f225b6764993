// A request to stop long work cleanly: SIGINT (Ctrl-C) or SIGTERM (a scheduler's
// preemption, `kill`) sets a flag that training reads at its next checkpoint, so that
// the run stops there with nothing lost (eval::RunOptions::stop) and the same command
// goes on. A second signal ends the process at once, as without the handlers.
#pragma once

namespace clr {

// Installs the handlers of SIGINT and SIGTERM (the program does, at start).
void install_stop_handlers();
// True once a stop was asked for (a signal, or request_stop()).
bool stop_requested();
void request_stop();

}  // namespace clr
