#!/bin/sh
":" //; # calico_mesos is a POSIX shell script and a node program in one file: the build puts these
":" //; # lines before the bundle, and to node each is a string and a comment. The isolator runs it
":" //; # as a script, twice per task; node alone takes about 40 ms to start, this shell and socat
":" //; # a few. So when the node daemon listens and socat is there, the script hands it the
":" //; # request (daemon/forward-framing.ts: "calico_mesos", NUL, the environment as env -0 lists
":" //; # it, NUL, stdin) and prints its answer (the exit code's digit, then stdout); such an agent
":" //; # needs no node of its own. Otherwise, or when the daemon gives no answer, node runs this
":" //; # file, which answers in any case.
":" //; cm_socket=${CALICO_CNI_SOCKET-/var/run/calico/cni.sock}
":" //; cm_asked_daemon=no
":" //; # (A terminal on stdin is someone trying it by hand: node answers that at once.)
":" //; if [ $# -eq 0 ] && ! [ -t 0 ] && [ -n "$cm_socket" ] && [ -S "$cm_socket" ] && command -v socat >/dev/null 2>&1; then
":" //;   # A caller that never closes stdin gets what it sent within 10 s, as from node. The dots
":" //;   # keep trailing newlines, which $(...) would strip.
":" //;   cm_request=$(timeout 10 cat; echo .)
":" //;   cm_request=${cm_request%.}
":" //;   cm_answer=$({ printf 'calico_mesos\0'; env -0; printf '\0%s' "$cm_request"; } | socat -T 125 - "UNIX-CONNECT:$cm_socket" 2>/dev/null; echo .)
":" //;   cm_answer=${cm_answer%.}
":" //;   cm_code=${cm_answer%"${cm_answer#?}"}
":" //;   case $cm_code in [0-9]) printf '%s\n' "${cm_answer#?}"; exit "$cm_code" ;; esac
":" //;   cm_asked_daemon=yes
":" //; fi
":" //; command -v node >/dev/null 2>&1 || { echo '{"error": "calico_mesos needs its node daemon listening, or node (20 or later) on PATH"}'; exit 1; }
":" //; if [ "$cm_asked_daemon" = yes ]; then
":" //;   # The daemon gave no answer: node runs the command itself, without asking it again. (The
":" //;   # exit is on the pipeline's line: the ":" of the next would reset its status.)
":" //;   printf '%s' "$cm_request" | CALICO_CNI_SOCKET='' node "$0"; exit $?
":" //; fi
":" //; exec node "$0" "$@"
