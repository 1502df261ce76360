#!/usr/bin/env bash
# Isaac Lab's two-node torchrun recipe, mapped to mjdist: start this script on both nodes, NODE_RANK=0 on the
# first. torchrun starts GPUS_PER_NODE processes per node; each runs `train` as one rank (rank mode: RANK,
# WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from torchrun), on cuda:<LOCAL_RANK>.
# Global rank 0 (node 0, local rank 0) writes the run directory under logs/rsl_rl/ on node 0.
#
#   node 0:  NODE_RANK=0 MASTER_ADDR=<address of node 0> examples/torchrun/two-nodes.sh
#   node 1:  NODE_RANK=1 MASTER_ADDR=<address of node 0> examples/torchrun/two-nodes.sh
#
# Needs: the same checkout and .venv on both nodes, and port 5555 (plus NCCL's own ports) open between them.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODE_RANK=${NODE_RANK:?set NODE_RANK: 0 on the first node, 1 on the second}
MASTER_ADDR=${MASTER_ADDR:?set MASTER_ADDR to an address of node 0 that node 1 can reach}
GPUS_PER_NODE=${GPUS_PER_NODE:-2}

.venv/bin/torchrun --nnodes 2 --nproc-per-node "$GPUS_PER_NODE" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port 5555 \
    .venv/bin/train velocity-flat-quadruped --run-name torchrun-two-nodes
