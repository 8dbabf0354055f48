#!/bin/sh
":" //; # Each executable a runtime starts per command (the CNI plugins calico and calico-ipam, and
":" //; # calico_mesos) is this POSIX shell script and a node program in one file: the build puts
":" //; # these lines before the bundle, and to node each is a string and a comment. Node takes about
":" //; # 40 ms to start, this shell and socat a few. So when the node daemon listens and socat is
":" //; # there, the script hands it the whole invocation (daemon/forward-framing.ts: the kind, the
":" //; # socket it asked, the environment as env -0 lists it, stdin) and prints its answer; node
":" //; # runs this file, standalone, only when no daemon answers. A CNI VERSION is answered here:
":" //; # the versions are fixed when the file is built. The build fills in the @...@ below, the
":" //; # installer the node to run.
":" //; front_kind='@KIND@'
":" //; front_node=node
":" //; front_latest='@LATEST_CNI_VERSION@'
":" //; front_end='@ANSWER_END@'
":" //; front_default_socket='@DEFAULT_SOCKET@'
":" //; front_read=no
":" //; # The value of the first "KEY": "VALUE" in the request when it is written plainly (a string with
":" //; # no escapes, only spaces around the colon); else nothing, and front_plain says so. The request
":" //; # is split at its quotes: linear, where the shell's own ${x#*...} is quadratic in the key's
":" //; # position. The daemon checks what matters again on the parsed request (a key found in a
":" //; # nested object is refused there).
":" //; front_plain_string() {
":" //;   front_plain=absent; front_value=; front_state=0
":" //;   case $front_request in *"\"$1\""*) front_plain=no ;; *) return ;; esac
":" //;   IFS='"'; set -f
":" //;   for front_f in $front_request; do
":" //;     case $front_state in 1) case $front_f in *[!\ :]* | '') front_state=0 ;; *:*) front_state=2; continue ;; *) front_state=0 ;; esac ;; 2) front_value=$front_f; front_state=3; break ;; esac
":" //;     [ "$front_f" = "$1" ] && front_state=1
":" //;   done
":" //;   unset IFS; set +f
":" //;   case $front_state$front_value in 3*\\*) front_value= ;; 3*) front_plain=yes ;; *) front_value= ;; esac
":" //; }
":" //; # VERSION's answer, the same as node's, for the two shapes a runtime sends: no cniVersion at all
":" //; # (the latest), or exactly {"cniVersion":"V"} (V when supported, else the latest). Anything else
":" //; # goes the way of every command.
":" //; front_version() {
":" //;   front_v=
":" //;   case $front_request in *\\*) return 1 ;; *cniVersion*) ;; *) front_v=$front_latest ;; esac
":" //;   if [ -z "$front_v" ]; then
":" //;     front_nl=$(printf '\nx'); front_body=${front_request%"${front_nl%x}"}
":" //;     case $front_body in '{"cniVersion":"'*'"}' | '{"cniVersion": "'*'"}') ;; *) return 1 ;; esac
":" //;     front_plain_string cniVersion
":" //;     [ "$front_plain" = yes ] && { [ "$front_body" = "{\"cniVersion\":\"$front_value\"}" ] || [ "$front_body" = "{\"cniVersion\": \"$front_value\"}" ]; } || return 1
":" //;     front_v=$front_latest
":" //;     for front_s in @CNI_VERSIONS@; do [ "$front_value" = "$front_s" ] && front_v=$front_s; done
":" //;   fi
":" //;   printf '{"cniVersion":"%s","supportedVersions":%s}\n' "$front_v" '@CNI_VERSIONS_JSON@'
":" //; }
":" //; # (Arguments, or a terminal on stdin, are someone at a shell: node answers that at once. A PATH
":" //; # without the tools below leaves stdin to node too.)
":" //; if [ $# -eq 0 ] && ! [ -t 0 ] && command -v timeout >/dev/null 2>&1 && command -v cat >/dev/null 2>&1; then
":" //;   # A caller that never closes stdin gets what it sent within 10 s, as from node. The dot keeps
":" //;   # trailing newlines, which $(...) would strip.
":" //;   front_request=$(timeout 10 cat; echo .)
":" //;   front_request=${front_request%.}
":" //;   front_read=yes
":" //;   if [ "$front_kind" = calico_mesos ]; then
":" //;     front_socket=${CALICO_CNI_SOCKET-$front_default_socket}
":" //;   else
":" //;     [ "${CNI_COMMAND-}" = VERSION ] && front_version && exit 0
":" //;     # The config's daemon_socket ("" for none), else the default; one not written plainly is
":" //;     # left to node.
":" //;     front_plain_string daemon_socket
":" //;     case $front_plain in absent) front_socket=$front_default_socket ;; yes) front_socket=$front_value ;; *) front_socket= ;; esac
":" //;   fi
":" //;   # socat reads "," ":" and "!" in an address as its own.
":" //;   case $front_socket in *[,:!]*) front_socket= ;; esac
":" //;   # (-t: after sending, socat waits for the answer only half a second unless told otherwise.)
":" //;   if [ -n "$front_socket" ] && [ -S "$front_socket" ] && command -v socat >/dev/null 2>&1 && command -v env >/dev/null 2>&1; then
":" //;     front_answer=$({ printf '%s\0%s\0' "$front_kind" "$front_socket"; env -0; printf '\0%s' "$front_request"; } | socat -t 125 -T 125 - "UNIX-CONNECT:$front_socket" 2>/dev/null; echo .)
":" //;     front_answer=${front_answer%.}
":" //;     # The exit code's digit, stdout, then the end mark: an answer cut short is no answer.
":" //;     case $front_answer in [0-9]*"$front_end")
":" //;       front_answer=${front_answer%"$front_end"}
":" //;       # (The digit taken by a pattern: ${x%"${x#?}"} costs the square of the answer's length.)
":" //;       for front_s in 0 1 2 3 4 5 6 7 8 9; do case $front_answer in "$front_s"*) front_code=$front_s ;; esac; done
":" //;       front_answer=${front_answer#?}
":" //;       [ -z "$front_answer" ] || printf '%s\n' "$front_answer"
":" //;       exit "$front_code" ;; esac
":" //;   fi
":" //; fi
":" //; if ! command -v "$front_node" >/dev/null 2>&1; then
":" //;   if [ "$front_kind" = calico_mesos ]; then
":" //;     echo '{"error": "calico_mesos needs its node daemon listening (and socat), or node (20 or later) on PATH"}'
":" //;   else
":" //;     front_plain_string cniVersion
":" //;     front_v=$front_latest
":" //;     for front_s in @CNI_VERSIONS@; do [ "$front_value" = "$front_s" ] && front_v=$front_s; done
":" //;     printf '{"cniVersion":"%s","code":11,"msg":"%s needs its node daemon listening on daemon_socket (and socat), or node (20 or later) on PATH"}\n' "$front_v" "$front_kind"
":" //;   fi
":" //;   exit 1
":" //; fi
":" //; [ "$front_read" = yes ] || exec "$front_node" "$0" "$@"
":" //; # What was read is node's stdin, from a here-document: node replaces this shell (exec) rather
":" //; # than running beside it, so a runtime that kills the plugin kills node too, and no ADD goes on
":" //; # unseen after the runtime has moved on to DEL. Node skips the here-document as a comment; the
":" //; # shell never reads past its exec (the "/*" there, a glob, is an argument to ":").
":" /*; exec "$front_node" "$0" <<FRONT_REQUEST
${front_request}
FRONT_REQUEST
*/
