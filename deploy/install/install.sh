#!/usr/bin/env bash
# Install or upgrade Edge Inspector as a systemd service on this box.
#
# usage: sudo deploy/install/install.sh [options]
#
#   --bundle DIR        model bundle to install as <prefix>/bundles/<name of DIR>
#                       (verified with `edge-inspector check-bundle` first)
#   --config FILE       the station's config; an existing
#                       /etc/edge-inspector/config.yaml is never overwritten:
#                       FILE then goes next to it as config.yaml.new
#   --prefix DIR        install root (default /opt/edge-inspector)
#   --extras NAME       inference runtime: onnxruntime (default, always
#                       installed), openvino or tensorrt (pip's TensorRT wheels
#                       on x86 with CUDA, such as T4 servers; JetPack's on a Jetson)
#   --jetpack           a Jetson (detected from /etc/nv_tegra_release when not
#                       given): the venv sees the system packages, and neither
#                       pip's OpenCV nor pip's TensorRT is installed, so
#                       JetPack's OpenCV (GStreamer, CSI cameras) and TensorRT
#                       are used; then checks cv2 has GStreamer and, with
#                       --extras tensorrt, that TensorRT >= 10 imports
#   --no-jetpack        never treat this box as a Jetson
#   --system-site-packages
#                       let the venv see the system's Python packages
#   --no-start          install only: do not enable or (re)start the service
#   --dry-run           print each command that would change the system
#                       instead of running it (needs no root)
#   -h, --help          this text
#
# Idempotent: running it again upgrades the code, the unit and the bundle and
# restarts a running service. It keeps the engineer's config.yaml and
# edge-inspector.env (a note says so).

set -euo pipefail
# Everything installed under the prefix must be readable by the service user.
umask 022

readonly SERVICE=edge-inspector
readonly SERVICE_USER=edge-inspector
readonly DEFAULT_PREFIX=/opt/edge-inspector
readonly ETC_DIR=/etc/edge-inspector
readonly STATE_DIR=/var/lib/edge-inspector
readonly UNIT_DIR=/etc/systemd/system

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly REPO

PREFIX=$DEFAULT_PREFIX
BUNDLE=""
CONFIG=""
EXTRAS=onnxruntime
SYSTEM_SITE=0
JETPACK=auto
START=1
DRY_RUN=0
NOTES=()

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

note() {
    NOTES+=("$*")
}

# Run a command that changes the system, or print it under --dry-run.
run() {
    if ((DRY_RUN)); then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Export the KEY=value lines of a systemd EnvironmentFile (no shell expansion,
# one level of surrounding quotes removed), as systemd does for the service.
export_env_file() {
    local line key value
    [[ -r $1 ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[2]}
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
            value=${BASH_REMATCH[1]}
        fi
        export "$key=$value"
    done <"$1"
}

# Run the agent's CLI as the service user, with the service's environment, so
# that a check also proves the user can read what it names.
as_service() {
    (
        export_env_file "$ETC_DIR/$SERVICE.env"
        run runuser -u "$SERVICE_USER" -- "$PREFIX/venv/bin/edge-inspector" "$@"
    )
}

while (($#)); do
    case $1 in
        --bundle) BUNDLE=${2:?--bundle needs a directory}; shift ;;
        --bundle=*) BUNDLE=${1#*=} ;;
        --config) CONFIG=${2:?--config needs a file}; shift ;;
        --config=*) CONFIG=${1#*=} ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
        --prefix=*) PREFIX=${1#*=} ;;
        --extras) EXTRAS=${2:?--extras needs a name}; shift ;;
        --extras=*) EXTRAS=${1#*=} ;;
        --system-site-packages) SYSTEM_SITE=1 ;;
        --jetpack) JETPACK=1 ;;
        --no-jetpack) JETPACK=0 ;;
        --no-start) START=0 ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done

case $EXTRAS in
    onnxruntime) SPEC=$REPO ;;  # onnxruntime is a base dependency
    openvino | tensorrt) SPEC="${REPO}[$EXTRAS]" ;;
    *) die "--extras must be onnxruntime, openvino or tensorrt, not '$EXTRAS'" ;;
esac
[[ $PREFIX == /* && $PREFIX != / ]] || die "--prefix must be an absolute path, not '$PREFIX'"
PREFIX=${PREFIX%/}
if [[ -n $BUNDLE ]]; then
    [[ -d $BUNDLE ]] || die "--bundle: $BUNDLE is not a directory"
    BUNDLE=$(cd "$BUNDLE" && pwd)
fi
if [[ -n $CONFIG ]]; then
    [[ -f $CONFIG ]] || die "--config: $CONFIG is not a file"
    CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")
fi
if [[ $JETPACK == auto ]]; then
    JETPACK=0
    [[ -e /etc/nv_tegra_release ]] && JETPACK=1
fi
((JETPACK)) && SYSTEM_SITE=1
readonly PREFIX BUNDLE CONFIG EXTRAS SPEC SYSTEM_SITE JETPACK START DRY_RUN

if ((!DRY_RUN)); then
    ((EUID == 0)) || die "run as root (sudo), or with --dry-run"
    command -v systemctl >/dev/null || die "systemctl not found: this installs a systemd service"
    python3 -c 'import ensurepip, venv' 2>/dev/null ||
        die "python3 cannot create virtual environments: install python3-venv (Debian, Ubuntu, JetPack)"
fi
trap 'echo "install.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
# Relative paths are resolved above; the service user cannot read root's cwd.
cd /

VENV=$PREFIX/venv
CONF=$ETC_DIR/config.yaml
ENV_FILE=$ETC_DIR/$SERVICE.env
UNIT=$UNIT_DIR/$SERVICE.service
NOLOGIN=$(command -v nologin || true)
if [[ -z $NOLOGIN ]]; then
    NOLOGIN=/usr/sbin/nologin
    [[ -x $NOLOGIN ]] || NOLOGIN=/sbin/nologin
fi

echo "== user and group $SERVICE_USER"
getent group video >/dev/null || run groupadd --system video
getent group "$SERVICE_USER" >/dev/null || run groupadd --system "$SERVICE_USER"
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    echo "user $SERVICE_USER exists"
    # Camera devices (/dev/video*) belong to the video group.
    id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx video || run usermod -a -G video "$SERVICE_USER"
else
    run useradd --system --gid "$SERVICE_USER" --groups video --home-dir "$STATE_DIR" --no-create-home \
        --shell "$NOLOGIN" --comment "Edge Inspector agent" "$SERVICE_USER"
fi

echo "== directories"
run install -d -m 0755 -o root -g root "$PREFIX" "$PREFIX/bundles"
run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC_DIR"
run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"

echo "== virtual environment $VENV ($EXTRAS$( ((JETPACK)) && echo ", JetPack"))"
venv_args=()
((SYSTEM_SITE)) && venv_args+=(--system-site-packages)
run python3 -m venv "${venv_args[@]}" "$VENV"
run "$VENV/bin/python" -m pip install --upgrade pip
# --upgrade: a re-run installs the repository's current code.
if ((JETPACK)); then
    # The package alone, then what JetPack does not ship: pip's OpenCV would
    # shadow JetPack's (and lose GStreamer), and pip has no TensorRT for Jetson.
    requirements=$VENV/jetpack-requirements.txt
    run "$VENV/bin/python" -m pip install --upgrade --no-deps "$REPO"
    run "$VENV/bin/python" -m deploy.install.jetpack requirements --extras "$EXTRAS" --out "$requirements"
    run "$VENV/bin/python" -m pip install --upgrade -r "$requirements"
    check_args=()
    [[ $EXTRAS == tensorrt ]] && check_args+=(--tensorrt)
    run "$VENV/bin/python" -m deploy.install.jetpack check "${check_args[@]}"
else
    run "$VENV/bin/python" -m pip install --upgrade "$SPEC"
fi

if [[ -n $BUNDLE ]]; then
    name=$(basename "$BUNDLE")
    dest=$PREFIX/bundles/$name
    echo "== bundle $name -> $dest"
    # Copy next to the live bundle, verify, then swap: a bad copy never
    # replaces a good bundle, and a running agent keeps its open files.
    run rm -rf "$dest.new" "$dest.old"
    run cp -R "$BUNDLE" "$dest.new"
    run chown -R root:root "$dest.new"
    run chmod -R u=rwX,go=rX "$dest.new"
    as_service check-bundle "$dest.new"
    if [[ -e $dest ]]; then
        run mv "$dest" "$dest.old"
    fi
    run mv "$dest.new" "$dest"
    run rm -rf "$dest.old"
fi

echo "== configuration $ETC_DIR"
# The shipped example, for reference; always the current one.
run install -m 0640 -o root -g "$SERVICE_USER" "$REPO/systemd/config.example.yaml" "$ETC_DIR/config.example.yaml"
example_only=0
wrote_new=0
if [[ -n $CONFIG ]]; then
    if [[ ! -e $CONF ]]; then
        run install -m 0640 -o root -g "$SERVICE_USER" "$CONFIG" "$CONF"
    elif ! cmp -s "$CONFIG" "$CONF"; then
        run install -m 0640 -o root -g "$SERVICE_USER" "$CONFIG" "$CONF.new"
        wrote_new=1
        note "kept the existing $CONF; the --config file is $CONF.new: compare (diff $CONF $CONF.new) and move it into place"
    fi
elif [[ ! -e $CONF ]]; then
    run install -m 0640 -o root -g "$SERVICE_USER" "$REPO/systemd/config.example.yaml" "$CONF"
    example_only=1
    note "installed the example as $CONF: edit it for this station, check it with" \
        "'$VENV/bin/edge-inspector check-config $CONF', then 'systemctl enable --now $SERVICE'"
else
    echo "keeping $CONF"
fi
if [[ -e $CONF ]]; then
    # The service reads it as its group; the engineer's content is untouched.
    run chown root:"$SERVICE_USER" "$CONF"
    run chmod 0640 "$CONF"
fi
if [[ -e $ENV_FILE ]]; then
    cmp -s "$REPO/systemd/$SERVICE.env" "$ENV_FILE" ||
        note "kept the existing $ENV_FILE; the shipped one is $REPO/systemd/$SERVICE.env"
else
    run install -m 0640 -o root -g "$SERVICE_USER" "$REPO/systemd/$SERVICE.env" "$ENV_FILE"
fi

echo "== unit $UNIT"
run install -m 0644 -o root -g root "$REPO/systemd/$SERVICE.service" "$UNIT"
if [[ $PREFIX != "$DEFAULT_PREFIX" ]]; then
    run sed -i "s#$DEFAULT_PREFIX#$PREFIX#g" "$UNIT"
fi

if ((!example_only)); then
    echo "== checking $CONF"
    as_service check-config "$CONF"
    if ((wrote_new)); then
        as_service check-config "$CONF.new"
    fi
fi

echo "== systemd"
run systemctl daemon-reload
if ((START && !example_only)); then
    was_active=0
    systemctl is-active --quiet "$SERVICE" 2>/dev/null && was_active=1
    # Type=notify: this waits for READY=1 (model loaded and warm) or fails.
    run systemctl enable --now "$SERVICE.service"
    # enable --now leaves a running service alone: restart it onto the new code.
    if ((was_active)); then
        run systemctl restart "$SERVICE.service"
    fi
    ((DRY_RUN)) || systemctl --no-pager --lines=5 status "$SERVICE.service" || true
elif ((!START)); then
    note "not started (--no-start): systemctl enable --now $SERVICE"
fi

for n in "${NOTES[@]}"; do
    echo "note: $n"
done
if ((DRY_RUN)); then
    echo "dry run: nothing was changed"
else
    echo "done"
fi
