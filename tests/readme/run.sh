#!/usr/bin/env bash
# Runs the README's Quick start as a person would: its ```sh blocks, in order, in one bash session
# (`set -euo pipefail`), in a fresh empty directory, then checks what the README promises: the
# files and log lines of the first start, every request answered 2xx, a sandbox record listed and
# the test event processed in the inbox.
#
#   tests/readme/run.sh [README]     (default: README.md of this checkout)
#
# The blocks are run verbatim: the session script keeps the README's own line numbers, so a failure
# names the README line. Only these commands mean something else here, each said when it runs:
#   - `cargo run -p api` is run as `cargo run --manifest-path <checkout>/Cargo.toml -p api` from
#     the empty directory (cargo runs the binary where it is invoked, so `./data/` is fresh), in the
#     background (a person leaves it running in a terminal); the session waits for /readyz.
#     `cargo run -p api -- <command>` (an operator command) runs the same way, in the foreground.
#   - `cargo test --workspace` is skipped: .ci/run runs the suite itself.
#   - `curl` is wrapped to record each answer: any status of 400 or more (or none) fails the
#     command that made it, and each request may take a minute at most.
#   - The README's address is localhost:8080, the default. When 8080 is taken on this host the api
#     is started with TRIBUTARY_LISTEN on a free port and `localhost:8080` / `127.0.0.1:8080` in the
#     blocks and the expected log lines are changed to it (said in the output); nothing else is
#     substituted.
# A `…` left in a command (outside a comment) is a placeholder nobody can copy, and fails the run.
# The last line is `readme: N passed, N failed` (checks); any failure exits non-zero.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
readme=$(realpath "${1:-$root/README.md}")

passed=0
failed=0
summary() { echo "readme: $passed passed, $failed failed"; }
pass() { echo "== ok: $1"; passed=$((passed + 1)); }
fail() { # fail NAME [DETAIL...]: counts a failed check and stops the run.
  echo "== FAILED: $1" >&2
  shift
  [ $# -eq 0 ] || printf '%s\n' "$@" >&2
  failed=$((failed + 1))
  summary
  exit 1
}

for tool in jq curl cargo; do
  command -v "$tool" >/dev/null ||
    fail "$tool is installed" "$tool is missing: the Quick start uses it (jq and curl: apt-get install -y $tool)"
done

scratch=$(mktemp -d)
work=$scratch/quickstart # the empty directory the person starts in
mkdir "$work"
cleanup() {
  if [ -s "$scratch/api.pid" ]; then
    local pid
    pid=$(cat "$scratch/api.pid")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# --- the Quick start, from its heading to the next `## ` -----------------------------------------
# session.sh: the ```sh (or ```bash) blocks' lines on their README line numbers, every other line blank.
# expected.log: the lines of the plain ``` blocks (the log the first start prints).
awk -v session="$scratch/session.sh" -v expected="$scratch/expected.log" '
  fence == "" && /^## / { inside = ($0 == "## Quick start"); if (inside) found = 1 }
  {
    line = ""
    if (inside && fence == "" && /^```/) { fence = substr($0, 4); fence = fence == "" ? "plain" : fence == "bash" ? "sh" : fence; if (fence == "sh") blocks++ }
    else if (inside && fence != "" && /^```$/) fence = ""
    else if (fence == "sh") line = $0
    else if (fence == "plain") print > expected
    print line > session
  }
  END { if (!found) exit 2; if (!blocks) exit 3; print blocks > (session ".blocks") }
' "$readme" || fail "README has a Quick start with \`\`\`sh blocks" "no \"## Quick start\" section with a \`\`\`sh block in $readme"
touch "$scratch/expected.log"
blocks=$(cat "$scratch/session.sh.blocks")
commands=$(grep -cvE '^[[:space:]]*(#|$)' "$scratch/session.sh" || true)
# A placeholder: an ellipsis before any comment on its line.
placeholders=$(sed -E 's/(^|[[:space:]])#.*$//' "$scratch/session.sh" | grep -n '…' || true)
[ -z "$placeholders" ] ||
  fail "the Quick start's commands can be copied as written" "placeholders left (README line: text):" "$placeholders"
pass "the Quick start has $blocks shell blocks ($commands lines of commands), none with a placeholder"

# --- the address ---------------------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=8080
listen_env=()
if ! port_free 8080; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  listen_env=("TRIBUTARY_LISTEN=127.0.0.1:$port")
  echo "-- 8080 is taken on this host: the api listens on $port (TRIBUTARY_LISTEN), and localhost:8080 reads localhost:$port"
  sed -i -E "s/(localhost|127\\.0\\.0\\.1):8080/\\1:$port/g" "$scratch/session.sh" "$scratch/expected.log"
fi

# --- the session ---------------------------------------------------------------------------------
# Sourced first through BASH_ENV, so session.sh keeps the README's line numbers.
{
  printf 'scratch=%q root=%q port=%q readme_name=%q\n' "$scratch" "$root" "$port" "$(basename "$readme")"
  cat <<'EOF'
set -euo pipefail
# On a failure, the README's whole command (its continuation lines too) and where it is.
failed_at() {
  local rc=$1 first=$2 last=$2
  local ends_open='(\\|\|)[[:space:]]*$' # a line ending in `\` or `|` goes on
  continued() { [[ $(sed -n "$1p" "$0") =~ $ends_open ]]; }
  while [ "$first" -gt 1 ] && continued $((first - 1)); do first=$((first - 1)); done
  while continued "$last"; do last=$((last + 1)); done
  echo "FAILED (exit $rc) at $readme_name:$first:" >&2
  sed -n "${first},${last}p" "$0" >&2
}
trap 'failed_at $? $LINENO' ERR
cargo() {
  case "$*" in
    "run -p api")
      echo "-- cargo run -p api: as cargo run --manifest-path $root/Cargo.toml -p api, from the empty directory $PWD, in the background" >&2
      setsid cargo run --manifest-path "$root/Cargo.toml" -p api >"$scratch/api.log" 2>&1 &
      echo $! >"$scratch/api.pid"
      local pid=$! i
      for i in $(seq 1 120); do
        if command curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
          echo "-- the api is ready on 127.0.0.1:$port" >&2
          return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$scratch/api.log" >&2; echo "the api exited" >&2; return 1; }
        sleep 1
      done
      tail -n 50 "$scratch/api.log" >&2
      echo "the api is not ready after 120 s" >&2
      return 1
      ;;
    "run -p api -- "*) # an operator command: it runs and ends
      command cargo run --quiet --manifest-path "$root/Cargo.toml" -p api "${@:4}"
      ;;
    "test --workspace")
      echo "-- skipped cargo test --workspace: .ci/run runs the suite itself" >&2
      ;;
    *)
      echo "the Quick start runs \`cargo $*\`, which tests/readme/run.sh does not know how to run" >&2
      return 1
      ;;
  esac
}
session_stdout=$(readlink "/proc/$$/fd/1")
curl() {
  local url="" arg out status rc=0
  for arg in "$@"; do
    case $arg in localhost* | 127.0.0.1* | http://* | https://*) url=$arg ;; esac
  done
  out=$(mktemp "$scratch/request.XXXXXX")
  command curl --max-time 60 -D "$out.headers" "$@" | tee "$out.body" || rc=$?
  [ "$rc" -eq 0 ] || { echo "curl failed (exit $rc): $url" >&2; return 1; }
  status=$(awk 'toupper($1) ~ /^HTTP\// { s = $2 } END { print s }' "$out.headers" 2>/dev/null)
  printf '%s\t%s\t%s\n' "$status" "$url" "$out.body" >>"$scratch/requests.tsv"
  # The answer printed may lack a final newline; the status goes on a line of its own.
  local me=$BASHPID # this shell, or the pipeline's subshell it runs in
  if [ "$(readlink "/proc/$me/fd/1")" = "$session_stdout" ] && [ -s "$out.body" ] &&
    [ -n "$(tail -c 1 "$out.body")" ]; then
    echo >&2
  fi
  echo "-- HTTP $status from $url" >&2
  [ -n "$status" ] && [ "$status" -lt 400 ] || { echo "answered ${status:-nothing}" >&2; return 1; }
}
EOF
} >"$scratch/prelude.sh"

# Built first, in the foreground, so that the session's `cargo run -p api` starts it at once (after
# .ci/run's `cargo build -p api --bin api` there is nothing left to build).
echo "-- cargo build -p api"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p api || fail "cargo build -p api"

echo "-- running the Quick start of $readme in $work"
# The person's environment has no Tributary settings: the api gets the defaults the README shows.
session_rc=0
(
  cd "$work"
  while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(TRIBUTARY_|DATABASE_URL$|RUST_LOG$)')
  for e in "${listen_env[@]}"; do export "${e?}"; done
  BASH_ENV="$scratch/prelude.sh" bash "$scratch/session.sh"
) 2>&1 | tee "$scratch/session.out" || session_rc=$?
touch "$scratch/requests.tsv" "$scratch/api.log"
requests=$(wc -l <"$scratch/requests.tsv")
if [ "$session_rc" -ne 0 ]; then
  fail "the Quick start runs to its end" "the command above failed (exit $session_rc); the api's log ends:" \
    "$(tail -n 30 "$scratch/api.log")"
fi
pass "the Quick start runs to its end: $requests requests, each answered below 400"

# --- what the README says the first start does ---------------------------------------------------
# Every ./path named in the Quick start's prose exists in the directory it started in.
paths=$(awk '/^## / { inside = ($0 == "## Quick start") } /^```/ { fence = !fence; next }
             inside && !fence' "$readme" | grep -oE '`\./[^` ]+`' | tr -d '`' | sort -u || true)
missing=""
for p in $paths; do [ -e "$work/$p" ] || missing="$missing $p"; done
[ -z "$missing" ] || fail "the first start creates the files the README names" "missing in $work:$missing"
pass "the first start creates the files the README names: $(echo $paths)"

# Each log line the README shows, `LEVEL message`, appears in the api's log at that level.
sed -E 's/\x1b\[[0-9;]*m//g' "$scratch/api.log" >"$scratch/api.plain.log"
while IFS= read -r line; do
  [ -n "$line" ] || continue
  level=${line%% *}
  message=${line#* }
  grep -F " $level " "$scratch/api.plain.log" | grep -F "$message" >/dev/null ||
    fail "the api logs: $line" "not in its log:" "$(head -n 40 "$scratch/api.plain.log")"
  pass "the api logs: $level ${message:0:60}…"
done <"$scratch/expected.log"

# --- what the person sees at the end -------------------------------------------------------------
# The last answers of the records listing and of the inbox, as the Quick start printed them.
answer() { awk -F'\t' -v re="$1" '$2 ~ re { f = $3 } END { print f }' "$scratch/requests.tsv"; }
records=$(answer '/v1/connections/[^/]+/records')
[ -n "$records" ] || fail "the Quick start lists the sandbox's records" "no GET …/connections/{id}/records among its requests"
jq -e '[.data[] | select(.object == "leads" and (.fields.email | test("@"))
          and (.fields.stripe_checkout_session_id | startswith("cs_")))] | length >= 1' \
  "$records" >/dev/null 2>&1 ||
  fail "a sandbox lead appears, with the customer's e-mail and the checkout session" "the listing printed:" "$(cat "$records")"
pass "a sandbox lead appears: $(jq -c '.data[0].fields | {email, name, stripe_checkout_session_id}' "$records")"

events=$(answer '/v1/events([?].*)?$')
[ -n "$events" ] || fail "the Quick start shows the inbox" "no GET /v1/events among its requests"
jq -e '[.data[] | select(.type == "checkout.session.completed" and .status == "processed")] | length >= 1' \
  "$events" >/dev/null 2>&1 ||
  fail "the inbox shows the test event processed" "the inbox printed:" "$(cat "$events")"
pass "the inbox shows the test event processed"

summary
