package identity

// NewWithClock is New on a clock of the test's.
var NewWithClock = newWithClock
