#!/usr/bin/env bash
# Checks the Dockerfile's build stage without a Docker engine: builds exactly the files
# that stage COPYs, with the Rust toolchain its `FROM rust:<version>` names, by running
# its RUN lines in a scratch directory. So a source the build needs but the Dockerfile
# does not copy (a `[[bench]]`, a workspace member), or a lock file or `rust-version`
# the builder image's toolchain cannot handle, fails here as it would in `docker build`.
#
#   scripts/check-docker-build.sh            # the RUN lines with `cargo build` -> `cargo check` (CI)
#   scripts/check-docker-build.sh --build    # the RUN lines exactly as written (slow: release + LTO)
#
# The build stage is the stage the final stage copies from (`COPY --from=<stage>`).
# Supported there: FROM rust:<version>[-variant], WORKDIR, ENV-free COPY in shell form
# (options like --chown are ignored; `--from` and the JSON form are refused), and RUN
# lines that are cargo commands; anything else stops the script, so that the Dockerfile
# and this check cannot drift apart silently. The toolchain is an installed one of that
# version (`1.95` is any installed 1.95.x, e.g. `stable` when that is 1.95.0: the image
# carries the latest 1.95.x), or
# `rustup toolchain install <version>`. `.dockerignore` patterns are applied with tar's
# --exclude (a pattern matches at any depth, which can only exclude more than Docker).
#
# Environment: DOCKERFILE (Dockerfile), DOCKER_CHECK_TARGET_DIR (cargo's target dir,
# ${CARGO_TARGET_DIR:-target}/docker-check, kept between runs; the copied files go to
# its context/).
#
# Cost: cargo check of the release profile, dependencies included, in its own target
# dir: about 2.5 min of CPU (user) time from cold on 2 cores; a rerun with nothing
# changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DOCKERFILE=${DOCKERFILE:-Dockerfile}
MODE=check
case "${1:-}" in
  "") ;;
  --build) MODE=build ;;
  *) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac
fail() { echo "check-docker-build: $*" >&2; exit 1; }
[ -f "$DOCKERFILE" ] || fail "no $DOCKERFILE"

# The Dockerfile as logical lines (continuations joined, comments and blanks dropped).
lines=()
cur=""
while IFS= read -r line || [ -n "$line" ]; do
  [[ -z "$cur" && "$line" =~ ^[[:space:]]*(#|$) ]] && continue
  if [[ "$line" =~ \\[[:space:]]*$ ]]; then
    cur+="${line%\\*} "
    continue
  fi
  lines+=("$cur$line")
  cur=""
done < "$DOCKERFILE"
[ -z "$cur" ] || lines+=("$cur")

# Stages: the index of each FROM line, its name, and the stage the last one copies from.
from_idx=()
stage_names=()
for i in "${!lines[@]}"; do
  read -r -a w <<< "${lines[$i]}"
  if [[ "${w[0]^^}" == FROM ]]; then
    from_idx+=("$i")
    name=""
    [[ "${w[2]:-}" =~ ^[Aa][Ss]$ ]] && name=${w[3]:-}
    stage_names+=("$name")
  fi
done
[ ${#from_idx[@]} -gt 0 ] || fail "$DOCKERFILE has no FROM"
last=$(( ${#from_idx[@]} - 1 ))
build_stage=""
for (( i = from_idx[last]; i < ${#lines[@]}; i++ )); do
  if [[ "${lines[$i]}" =~ ^[[:space:]]*[Cc][Oo][Pp][Yy][[:space:]].*--from=([^[:space:]]+) ]]; then
    [ -z "$build_stage" ] || [ "$build_stage" = "${BASH_REMATCH[1]}" ] \
      || fail "the final stage copies from several stages; teach this script which to check"
    build_stage=${BASH_REMATCH[1]}
  fi
done
[ -n "$build_stage" ] || fail "the final stage copies from no build stage (COPY --from=...)"
stage=""
for s in "${!stage_names[@]}"; do
  [ "${stage_names[$s]}" = "$build_stage" ] && stage=$s
done
[ -n "$stage" ] || fail "no stage named $build_stage"
start=${from_idx[$stage]}
end=${#lines[@]}
[ "$stage" -lt "$last" ] && end=${from_idx[$((stage + 1))]}

# The toolchain the builder image carries.
read -r -a w <<< "${lines[$start]}"
image=${w[1]}
[[ "$image" =~ ^(docker\.io/(library/)?)?rust:([0-9]+\.[0-9]+(\.[0-9]+)?)(-.*)?$ ]] \
  || fail "the build stage's image $image is not rust:<version>[-variant] (pin a version)"
version=${BASH_REMATCH[3]}
# An installed toolchain of that version, by name (1.95.0-…) or by what it is (stable).
toolchain=""
best=""
for tc in $(rustup toolchain list | awk '{print $1}'); do
  v=$(rustup run "$tc" rustc --version 2>/dev/null | awk '{print $2}')
  if [[ "$v" != *-* ]] && [[ "$v" == "$version" || "$v" == "$version".* ]] && [[ -z "$best" || "$(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n 1)" == "$v" ]]; then
    best=$v
    toolchain=$tc
  fi
done
if [ -z "$toolchain" ]; then
  echo "== rustup toolchain install $version (named by $image)"
  rustup toolchain install "$version" --profile minimal \
    || fail "toolchain $version (from $image) is not installed and could not be installed"
  toolchain=$version
fi

# The build stage's files, COPYd into a scratch root as Docker would. The root sits at a
# fixed place beside cargo's target dir and files keep their mtimes, so a second run
# only checks what changed.
target_dir=${DOCKER_CHECK_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/docker-check}
[[ "$target_dir" == /* ]] || target_dir=$ROOT/$target_dir
scratch=$target_dir/context
rm -rf "$scratch"
mkdir -p "$scratch"
excludes=(--exclude-vcs)
if [ -f .dockerignore ]; then
  while IFS= read -r pat; do
    [[ -z "$pat" || "$pat" == \#* ]] && continue
    [[ "$pat" == !* ]] && fail ".dockerignore exceptions (!) are not supported here"
    excludes+=("--exclude=${pat#\*\*/}")
  done < .dockerignore
fi
workdir=/
runs=()
copied=()
for (( i = start + 1; i < end; i++ )); do
  read -r -a w <<< "${lines[$i]}"
  case "${w[0]^^}" in
    WORKDIR)
      case "${w[1]}" in
        /*) workdir=${w[1]} ;;
        *) workdir=${workdir%/}/${w[1]} ;;
      esac
      ;;
    COPY)
      args=()
      for a in "${w[@]:1}"; do
        case "$a" in
          --from=*) fail "COPY --from inside the build stage is not supported: ${lines[$i]}" ;;
          --*) ;;
          \[*) fail "COPY in JSON form is not supported: ${lines[$i]}" ;;
          *) args+=("$a") ;;
        esac
      done
      [ ${#args[@]} -ge 2 ] || fail "COPY needs a source and a destination: ${lines[$i]}"
      dest=${args[-1]}
      srcs=("${args[@]:0:${#args[@]}-1}")
      [[ "$dest" == /* ]] || dest=${workdir%/}/$dest
      into_dir=0
      [[ "$dest" == */ || "$dest" == */. || ${#srcs[@]} -gt 1 ]] && into_dir=1
      for pattern in "${srcs[@]}"; do
        matched=0
        for src in $pattern; do
          [ -e "$src" ] || continue
          matched=1
          copied+=("$src")
          if [ -d "$src" ]; then
            mkdir -p "$scratch$dest"
            tar -C "$src" "${excludes[@]}" -cf - . | tar -C "$scratch$dest" -xf -
          elif [ "$into_dir" = 1 ] || [ -d "$scratch$dest" ]; then
            mkdir -p "$scratch$dest"
            cp -p "$src" "$scratch$dest/"
          else
            mkdir -p "$(dirname "$scratch$dest")"
            cp -p "$src" "$scratch$dest"
          fi
        done
        # Docker fails the build on a source that matches nothing.
        [ "$matched" = 1 ] || fail "COPY source $pattern does not exist: ${lines[$i]}"
      done
      ;;
    RUN)
      cmd=${lines[$i]#*[Rr][Uu][Nn] }
      [[ "$cmd" =~ ^[[:space:]]*cargo[[:space:]] ]] \
        || fail "only cargo RUN lines are supported in the build stage: ${lines[$i]}"
      runs+=("$cmd")
      ;;
    ENV | ARG | LABEL | USER)
      fail "${w[0]} in the build stage is not supported yet: ${lines[$i]}"
      ;;
    *) fail "unsupported instruction in the build stage: ${lines[$i]}" ;;
  esac
done
[ ${#runs[@]} -gt 0 ] || fail "the build stage runs no cargo command"

echo "== $DOCKERFILE stage '$build_stage' ($image -> toolchain $toolchain), files: ${copied[*]}"
for cmd in "${runs[@]}"; do
  [ "$MODE" = check ] && cmd=${cmd/cargo build/cargo check}
  echo "== (cd $workdir && $cmd)"
  (cd "$scratch$workdir" && CARGO_TARGET_DIR=$target_dir RUSTUP_TOOLCHAIN=$toolchain \
    bash -c "$cmd") || fail "'$cmd' failed in the build stage's files"
done
echo "== the Docker build stage checks out"
