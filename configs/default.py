"""Shared defaults of every target: the paper's v2 protocol (docs/protocol.md).

Per-target files import this and change a few fields. Any field can be overridden on
the command line, e.g. ``--config.train.batch_size=64``. ``get_config("v1")`` gives
the protocol behind the paper's published tables
(docs/protocol.md#two-protocols-v2-and-v1).
"""

from ml_collections import ConfigDict, config_dict

FOLDS = (1, 2, 3, 4, 5)
# Where the targets' configs expect the paper's fold CSVs: data/<target>/ of the
# paper's code (github.com/DovileDo/revisiting-transfer), one folder per target.
PAPER_FOLDS_ROOT = "data/paper_folds"
# The image size the paper's CCA built its networks at, 112 otherwise
# (docs/protocol.md#image-sizes).
CCA_IMAGE_SIZES = {"pcam-small": 96, "breast": 224, "mammograms": 224, "thyroid": 224}
# Targets whose reference code uses class_mode 'categorical'; the rest are binary.
CATEGORICAL_TARGETS = ("isic", "knee")


def get_config(arg: str | None = None) -> ConfigDict:
    """The v2 defaults; ``arg='v1'`` switches to the published-tables protocol."""
    config = ConfigDict()
    config.target = ""
    config.protocol = "v2"  # the splits (v1: val + test held out); see apply_v1
    config.preset = ""  # "v1" once apply_v1 has set v1's training and AUC fields too
    config.seed = 0

    config.data = ConfigDict()
    config.data.name = ""  # dataset builder name (jaxtransfer.data.builders)
    config.data.manual_dir = "data/raw"  # the user's raw downloads
    config.data.data_dir = "data/prepared"  # prepared datasets (prepare.py)
    # docs/protocol.md#image-sizes: training size, recorded in every run
    config.data.size = 112
    # The paper's fold CSVs of the target (docs/protocol.md#folds: use them, do not
    # regenerate); for_target points at data/paper_folds/<target>. "" makes the folds
    # with the paper's procedure instead (grouped targets then differ).
    config.data.paper_folds = ""
    config.data.synthetic = False  # demo: write a synthetic raw download first
    config.data.synthetic_options = ConfigDict()  # its writer's keyword arguments

    config.grid = ConfigDict()
    config.grid.sources = ("ImageNet", "RadImageNet", "random")
    config.grid.freeze = (False, True)
    # The sources that get the frozen-base first stage when freeze is True: random
    # init has no pre-trained base to freeze, so it runs freezeFalse only.
    config.grid.freeze_sources = ("ImageNet", "RadImageNet")
    config.grid.folds = FOLDS

    config.init = ConfigDict()
    config.init.ImageNet = "weights/imagenet"  # python -m converters.keras_h5 ...
    config.init.RadImageNet = "weights/radimagenet"
    # Demos and tests: source -> synthetic domain; a missing checkpoint is then made
    # by a short pre-training, saved as Keras HDF5 and converted
    # (jaxtransfer.grid.pretraining).
    config.init.synthetic_domains = ConfigDict()
    config.init.synthetic_epochs = 3

    config.model = ConfigDict()
    config.model.name = "resnet50"  # or "tiny" for tests and demos
    config.model.head_dropout = 0.5  # pretrained sources (Dropout(0.5) + Dense)
    config.model.random_head_dropout = 0.0  # Keras ResNet50(weights=None): none
    config.model.compute_dtype = "float32"  # "bfloat16" on accelerators

    config.train = ConfigDict()
    config.train.batch_size = 128
    config.train.eval_batch_size = 128
    config.train.num_epochs = 200
    config.train.learning_rate = 1e-5
    config.train.patience = 30  # early stopping on val loss; best weights kept
    config.train.monitor = "loss"  # what fine-tuning stops and keeps weights on
    config.train.head_learning_rate = 1e-3  # freezeTrue stage 1 (Keras Adam default)
    # The reference runs both stages up to the same --epoch; None follows num_epochs.
    config.train.head_num_epochs = config_dict.placeholder(int)
    config.train.head_patience = 10  # early stopping on val accuracy
    config.train.head_monitor = "accuracy"  # what the head stage stops on
    # docs/protocol.md#head-stage: the reference's head-stage EarlyStopping does not
    # restore the best weights, so fine-tuning starts from the last head epoch; True
    # starts it from the best-validation-accuracy head instead.
    config.train.head_keep_best = False
    # docs/protocol.md#binary-loss: TF-Keras BinaryCrossentropy on a 2-way softmax is
    # sigmoid BCE on each pre-softmax logit; "softmax_cross_entropy" is the textbook
    # alternative.
    config.train.binary_loss = "sigmoid_bce_on_softmax_logits"
    # docs/protocol.md#batchnorm-in-fine-tuning: the reference code trains BatchNorm
    # (batch statistics) in stage 2.
    config.train.stage2_bn_train = True
    config.train.augment = True
    config.train.augment_convention = "keras_preprocessing"  # TF 2.8, the study
    # Recompute each block's inside in the backward pass instead of storing it:
    # about one more forward pass of compute for much less activation memory.
    config.train.remat = False

    # Checkpoints are written in the background, at most this often and at the
    # end of each stage but a run's last; a kill loses at most this much training.
    config.train.checkpoint_every_s = 60.0

    # The devices: runs go on different devices first (the "members" axis), each
    # run's batch is split over the rest ("data"). docs/training.md#devices
    config.mesh = ConfigDict()
    # Devices along the members axis: None picks the largest divisor of the device
    # count not above the number of runs trained together.
    config.mesh.members = config_dict.placeholder(int)
    # Member slots per device group: None puts every run of a group in one wave;
    # a cap bounds memory, and a run that stops early hands its slot to the next.
    config.mesh.slots_per_device = config_dict.placeholder(int)
    # How a device runs its slots: "loop" (one call each; CPUs), "map" (lax.map in
    # one program; accelerators), "vmap" (batched), or "auto" for the platform's.
    config.mesh.member_mode = "auto"

    config.eval = ConfigDict()
    # docs/protocol.md#auc: keras_micro | micro | macro | weighted | binary | v1_sklearn
    config.eval.auc = "keras_micro"

    config.analysis = ConfigDict()
    config.analysis.enabled = True  # CCA, similarity, figures, report.md
    config.analysis.reference = ""  # the paper's result CSVs, for side by side
    # docs/protocol.md#image-sizes: the CCA's image size; None is the training size. The
    # targets use CCA.py's (96 pcam-small, 224 breast, mammograms and thyroid, 112
    # otherwise), which needs the dataset prepared at that size too.
    config.analysis.image_size = config_dict.placeholder(int)
    config.analysis.full_depth = False  # all 16 blocks, all channels (slow on CPU)
    # Eigen/singular values of the CCA kernel: "linalg" (LAPACK on CPU, cuSOLVER on
    # GPU, one matrix at a time above 32x32), "jacobi" (all matrices at once),
    # "cholesky" (no decomposition: Cholesky whitening and a matmul-only sum of
    # singular values) or "auto": the fastest measured on the platform, Cholesky on
    # a GPU and linalg elsewhere (docs/analysis.md#cca).
    config.analysis.cca_decomposition = "auto"

    config.log = ConfigDict()
    config.log.progress = True

    # glibc malloc keeps freed memory for reuse (jaxtransfer.runtime.host): on
    # XLA:CPU a ResNet50 step stops page-faulting its buffers; small, compile-bound
    # runs get slower, so the demo sets False.
    config.host = ConfigDict()
    config.host.reuse_freed_memory = True

    if arg == "v1":
        apply_v1(config)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; known: 'v1'")
    return config


def apply_v1(config: ConfigDict) -> ConfigDict:
    """The protocol behind the published tables.

    docs/protocol.md#two-protocols-v2-and-v1
    """
    config.protocol = "v1"
    config.preset = "v1"
    config.train.patience = 3
    config.train.head_patience = 2
    # v1 binary heads are Dense(1, sigmoid) with standard BCE; AUC from sklearn.
    config.train.binary_loss = "sigmoid_bce"
    config.eval.auc = "v1_sklearn"  # binary AUC, or OvR weighted for multi-class
    return config


def for_target(target: str, size: int = 112, arg: str | None = None) -> ConfigDict:
    """The defaults for one of the study's targets."""
    config = get_config(arg)
    config.target = target
    config.data.name = target.replace("-", "_")
    config.data.size = size
    config.data.paper_folds = f"{PAPER_FOLDS_ROOT}/{target}"
    config.analysis.image_size = CCA_IMAGE_SIZES.get(target, 112)
    return config
