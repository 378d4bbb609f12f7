# Sourced by run.sh and fanout.sh (bash): the Redis Cluster both measure on, the tests' six
# nodes on loopback kept up by on_cluster.py, started and waited for in one place.

# start_cluster FILE [PYTHON]: starts on_cluster.py (with PYTHON, python3 by default), which
# writes the cluster's URL to FILE, and waits for it. Sets CLUSTER_PID as soon as the process
# starts (for the caller's cleanup to stop it, on every way out) and CLUSTER_URL once the
# cluster serves every slot; exits the script if the process ends before that.
start_cluster() {
    local file="$1" py="${2:-python3}"
    "$py" "$(dirname "${BASH_SOURCE[0]}")/on_cluster.py" "$file" &
    CLUSTER_PID=$!
    for _ in $(seq 300); do
        [ -s "$file" ] && break
        kill -0 "$CLUSTER_PID" 2>/dev/null || { echo "the Redis Cluster did not start" >&2; exit 1; }
        sleep 0.1
    done
    CLUSTER_URL="$(cat "$file")"
}
