"""Default configuration: every key of the original implementation plus the keys this project adds.

Keys keep the original names (users' yml files must keep working); where a name does not tell
the whole truth, the comment does; docs/behaviour.md#configuration compares them with the original.
"""

from yacs.config import CfgNode as CN

_C = CN()

# -----------------------------------------------------------------------------
# MODEL
# -----------------------------------------------------------------------------
_C.MODEL = CN()
# Device type: "cuda" or "cpu" ("cuda" falls back to the CPU with one log line when absent)
_C.MODEL.DEVICE = "cuda"
# CUDA device index used by single-process runs (torchrun uses LOCAL_RANK instead)
_C.MODEL.DEVICE_ID = "0"
# Model architecture; only "video_baseline" exists
_C.MODEL.ARCH = "video_baseline"
# Backbone: resnet18/34/50/101/152, se_resnet50/101/152, se_resnext50/101, senet154, resnet50_ibn_a
_C.MODEL.NAME = "resnet50"
# Convert BatchNorm to SyncBatchNorm in multi-GPU (torchrun, world size > 1) runs
_C.MODEL.SYN_BN = True
# Stride of the last ResNet stage (1 doubles the final feature map, as in the paper)
_C.MODEL.LAST_STRIDE = 1
# Path to the backbone weights; empty with "imagenet": torchvision's download (plain ResNets)
_C.MODEL.PRETRAIN_PATH = ""
# "imagenet": backbone weights; "self": a whole-model checkpoint; "none": random initialisation
_C.MODEL.PRETRAIN_CHOICE = "imagenet"
# New: allow "imagenet" weights covering only part of the backbone (e.g. resnet18's for resnet34)
_C.MODEL.PRETRAIN_PARTIAL = False
# Temporal fusion: "baseline" (no attention), "TA" (temporal attention), "ATTR_TA" (the paper)
_C.MODEL.FUSION_METHOD = "ATTR_TA"
# Head: "bnneck" (BatchNorm before the bias-free classifier) or "no"
_C.MODEL.NECK = "bnneck"
# Center loss precondition: "yes" or "no"; alone it turns nothing on (SOLVER.USE_CENTER_LOSS)
_C.MODEL.IF_WITH_CENTER = "no"
# "triplet", "center", "triplet_center": triplet always on; "center" in it gates USE_CENTER_LOSS
_C.MODEL.METRIC_LOSS_TYPE = "triplet"
# Label smoothing (epsilon 0.1) for the identity loss: "on" or "off"
_C.MODEL.IF_LABELSMOOTH = "on"
# New: activation checkpointing of the backbone stages (same results, much less memory)
_C.MODEL.GRAD_CHECKPOINT = False
# New: channels_last memory format for the convolutions, the same outputs: "auto" (on where it
# is measured faster: CUDA GPUs, CPUs for frames of 256x128 and more; see
# modeling.resolve_channels_last), True or False
_C.MODEL.CHANNELS_LAST = "auto"
# New: ReLU in the stem of the plain ResNets (resnet18 ... resnet152). False = the original
# (and the paper's) conv1 -> bn1 -> max-pool; True = torchvision's architecture. IBN-a and the
# SE family always have it.
_C.MODEL.STEM_RELU = False
# New: extra loss terms added to the total, each a name registered in layers.LOSS_TERMS
# (layers/terms.py; none is built in), logged as loss_<name>. [] = the original's loss
_C.MODEL.EXTRA_LOSSES = []
# New: the weights of MODEL.EXTRA_LOSSES, one per name (each >= 0); [] = 1.0 each
_C.MODEL.EXTRA_LOSS_WEIGHTS = []

# -----------------------------------------------------------------------------
# INPUT
# -----------------------------------------------------------------------------
_C.INPUT = CN()
# Training frame size [height, width]
_C.INPUT.SIZE_TRAIN = [384, 128]
# Test frame size [height, width]
_C.INPUT.SIZE_TEST = [384, 128]
# Probability of a horizontal flip
_C.INPUT.PROB = 0.5
# Probability of random erasing
_C.INPUT.RE_PROB = 0.5
# Normalisation mean (ImageNet)
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
# Normalisation standard deviation (ImageNet)
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
# Padding in pixels before the random crop
_C.INPUT.PADDING = 10
# New: one flip/crop/erase draw for the whole clip (False = per frame, as the original)
_C.INPUT.CLIP_CONSISTENT_AUG = False

# -----------------------------------------------------------------------------
# DATASETS
# -----------------------------------------------------------------------------
_C.DATASETS = CN()
# Folder that holds the dataset (e.g. data/mars with bbox_train/, bbox_test/, info/, csv)
_C.DATASETS.ROOT_DIR = ""
# Dataset: "mars", "duke" (DukeMTMC-VideoReID), "ilidsvid", "prid" (no attributes), "folder"
_C.DATASETS.NAME = "mars"
# Frames per clip (T)
_C.DATASETS.SEQ_LEN = 4
# Training clip sampling: "random" (T consecutive places of the frame order, random start), "evenly"
_C.DATASETS.TRAIN_SAMPLE_METHOD = "random"
# Test clip sampling: "dense" (all clips, averaged), "evenly" or "random" (one clip)
_C.DATASETS.TEST_SAMPLE_METHOD = "dense"
# Maximum number of dense clips per test tracklet (a reproducible window is kept beyond it)
_C.DATASETS.TEST_MAX_SEQ_NUM = 200
# Attribute encoding and loss: "bce" (one-hot per group) or "mce" (one softmax per attribute)
_C.DATASETS.ATTRIBUTE_LOSS = "bce"
# New: shuffle each tracklet's frame list once at load time, seeded (the original's behaviour)
_C.DATASETS.SHUFFLE_FRAMES = True
# New: write a synthetic dataset in the real on-disk format to ROOT_DIR when it is missing
_C.DATASETS.SYNTHETIC = CN()
# Write the synthetic dataset when ROOT_DIR does not exist yet
_C.DATASETS.SYNTHETIC.IF_MISSING = False
# Number of identities of the synthetic dataset (split half train, half test)
_C.DATASETS.SYNTHETIC.IDS = 40
# Tracklets per identity
_C.DATASETS.SYNTHETIC.TRACKLETS = 4
# Frames per tracklet
_C.DATASETS.SYNTHETIC.FRAMES = 8
# Image size [height, width] of the synthetic frames
_C.DATASETS.SYNTHETIC.SIZE = [64, 32]
# Seed of the synthetic dataset
_C.DATASETS.SYNTHETIC.SEED = 0

# -----------------------------------------------------------------------------
# DATALOADER
# -----------------------------------------------------------------------------
_C.DATALOADER = CN()
# Loader worker processes (the original forces 0; honoured here)
_C.DATALOADER.NUM_WORKERS = 8
# Sampler: "softmax" (random batches) or "softmax_triplet" / "triplet" (P identities x K tracklets)
_C.DATALOADER.SAMPLER = "softmax"
# Tracklets per identity in a batch (K)
_C.DATALOADER.NUM_INSTANCE = 16
# New: attempts to read an image before failing with an error that names it
_C.DATALOADER.READ_RETRIES = 3

# -----------------------------------------------------------------------------
# SOLVER
# -----------------------------------------------------------------------------
_C.SOLVER = CN()
# Name of a torch.optim class ("Adam", "SGD", "AdamW", ...)
_C.SOLVER.OPTIMIZER_NAME = "Adam"
# Number of epochs
_C.SOLVER.MAX_EPOCHS = 50
# Base learning rate
_C.SOLVER.BASE_LR = 3e-4
# Learning rate factor of bias parameters
_C.SOLVER.BIAS_LR_FACTOR = 2
# SGD momentum
_C.SOLVER.MOMENTUM = 0.9
# Triplet loss margin
_C.SOLVER.MARGIN = 0.3
# Unused (declared by the original, never read)
_C.SOLVER.CLUSTER_MARGIN = 0.3
# Center loss optimizer switch of the original (unused: SOLVER.USE_CENTER_LOSS decides)
_C.SOLVER.CENTER_ON = 0
# Learning rate of the center loss optimizer (SGD)
_C.SOLVER.CENTER_LR = 0.5
# Weight of the center loss term
_C.SOLVER.CENTER_LOSS_WEIGHT = 0.0005
# New: train with the center loss (the original declares it but never trains with it, even when
# METRIC_LOSS_TYPE/IF_WITH_CENTER ask for it; True uses CENTER_LOSS_WEIGHT and CENTER_LR)
_C.SOLVER.USE_CENTER_LOSS = False
# Unused range-loss settings of the original (declared, never read)
_C.SOLVER.RANGE_K = 2
# Unused (range loss)
_C.SOLVER.RANGE_MARGIN = 0.3
# Unused (range loss)
_C.SOLVER.RANGE_ALPHA = 0
# Unused (range loss)
_C.SOLVER.RANGE_BETA = 1
# Unused (range loss)
_C.SOLVER.RANGE_LOSS_WEIGHT = 1
# Weight decay of non-bias parameters
_C.SOLVER.WEIGHT_DECAY = 0.0005
# Weight decay of bias parameters
_C.SOLVER.WEIGHT_DECAY_BIAS = 0.0
# Learning-rate decay factor at each step
_C.SOLVER.GAMMA = 0.1
# Epochs (1-based) at which the learning rate is multiplied by GAMMA
_C.SOLVER.STEPS = (30, 55)
# Warmup start factor
_C.SOLVER.WARMUP_FACTOR = 1.0 / 3
# Warmup length in EPOCHS (the name says iterations; the scheduler steps once per epoch)
_C.SOLVER.WARMUP_ITERS = 500
# Warmup: "linear" or "constant"
_C.SOLVER.WARMUP_METHOD = "linear"
# Save a full checkpoint every this many epochs (and at the end)
_C.SOLVER.CHECKPOINT_PERIOD = 50
# Log a line every this many iterations
_C.SOLVER.LOG_PERIOD = 100
# Evaluate every this many epochs (and at the end)
_C.SOLVER.EVAL_PERIOD = 50
# Mixed precision (torch.amp): on a GPU AMP_DTYPE; on a CPU as SOLVER.CPU_PRECISION says
_C.SOLVER.FP_16 = True
# Training batch size in tracklets (P x K with the identity sampler)
_C.SOLVER.SEQS_PER_BATCH = 64
# New: autocast dtype with FP_16: "float16" (with a grad scaler) or "bfloat16"
_C.SOLVER.AMP_DTYPE = "float16"
# New: precision of FP_16 on a CPU: "auto" (bfloat16 autocast where the CPU has native bf16
# instructions, AVX512-BF16 or AMX; float32 elsewhere), "float32", "bfloat16", or "float16"
# (with a grad scaler, the GPU's fp16 path; slow on a CPU, for tests). Ignored on a GPU
_C.SOLVER.CPU_PRECISION = "auto"
# New: the first loss scale of the float16 grad scaler (torch.amp.GradScaler; an overflow
# halves the scale and skips the step)
_C.SOLVER.GRAD_SCALER_INIT_SCALE = 65536.0
# New: steps without overflow before the float16 grad scaler doubles its scale
_C.SOLVER.GRAD_SCALER_GROWTH_INTERVAL = 2000
# New: torch.compile the training forward and loss (inductor; falls back to eager with a
# warning when compilation fails)
_C.SOLVER.COMPILE = False
# New: mixed-precision backend: "native" (torch.amp); "apex" is refused with an error
_C.SOLVER.AMP_BACKEND = "native"
# New: evaluate once before the first epoch (the original always does)
_C.SOLVER.EVAL_BEFORE_TRAIN = False
# New: margin of the AITL terms (the paper uses 0)
_C.SOLVER.AITL_MARGIN = 0.0
# New: exclude the anchor itself from the AITL positives (False: the original, which includes it)
_C.SOLVER.AITL_EXCLUDE_SELF = False

# -----------------------------------------------------------------------------
# TEST
# -----------------------------------------------------------------------------
_C.TEST = CN()
# Tracklets per test batch in the original; here clips are packed across tracklets up to
# TEST.CLIPS_PER_BATCH, so this key is kept for compatibility and unused
_C.TEST.SEQS_PER_BATCH = 128
# New: most clips in one forward pass during evaluation (clips of several tracklets are packed);
# 0 = auto: 128 on a GPU, 2 on a CPU (small forwards stay in cache; README, Performance)
_C.TEST.CLIPS_PER_BATCH = 0
# New: compile the evaluation forward with torch.compile (inductor): the same features, after
# one compilation per run (the weights are graph inputs during training and frozen into the
# graph in evaluation-only runs; README, Performance). On a CPU it needs a C++ compiler;
# without one, a warning and the uncompiled model. Worth it for whole-dataset extraction;
# off by default
_C.TEST.COMPILE = False
# k-reciprocal re-ranking of the distance matrix: "yes" or "no"
_C.TEST.RE_RANKING = "no"
# Weights for evaluation-only runs (our checkpoints, plain state dicts or the original's files)
_C.TEST.WEIGHT = ""
# Test feature: "after" (after the BNNeck BatchNorm) or "before"
_C.TEST.NECK_FEAT = "after"
# L2-normalise test features: "yes" or "no". With DISTANCE "euclid" the original ignores it
# (unnormalised features); here "yes" normalises, "no" gives the original's ranking
_C.TEST.FEAT_NORM = "yes"
# Pooling of the clip features of a tracklet: "avg" or "max" (applied to query and gallery)
_C.TEST.TEMPORAL_POOL_METHOD = "avg"

# -----------------------------------------------------------------------------
# Top level
# -----------------------------------------------------------------------------
# Folder of the runs; each run writes to OUTPUT_DIR/<timestamp>/ (empty: "output")
_C.OUTPUT_DIR = ""
# Seed of python, numpy and torch
_C.RANDOM_SEED = 999
# Only evaluate TEST.WEIGHT, no training (the original declares it but ignores it; default False)
_C.EVALUATE_ONLY = False
# Feature distance of losses and retrieval: "cosine" or "euclid"
_C.DISTANCE = "cosine"
# Attribute recognition streams, losses and metrics on/off
_C.ATTR_RECOG_ON = True
