# script_util.sh - what the shell test scripts share (sourced): pass/fail
# counting with diagnostics, a free loopback port. A script sets NAME and
# calls finish at its end: "NAME: N passed, N failed", exit 0 only when none
# failed (tests/run_suite.sh adds that line's counts).
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
# a failing check shows its diagnostics: the first 60 lines
bad() { fail=$((fail + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -60 | sed 's/^/       /'; }
finish() { echo "$NAME: $pass passed, $fail failed"; [ "$fail" = 0 ]; exit; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
