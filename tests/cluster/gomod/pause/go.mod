// The pod sandbox (pause) program; no dependencies.
module modelrollout.test/pause

go 1.26.0
