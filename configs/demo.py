"""The whole grid on a synthetic breast-ultrasound download, sized for a laptop CPU.

    python -m jaxtransfer.main --config=configs/demo.py --workdir=runs/demo

It writes a small synthetic raw download in BUSI's real layout, prepares it with
the real builder, and trains every source x freeze setting on three folds with a tiny
ResNet at 32 px (or any backbone: --config.model.name=densenet121; the Inceptions
also need --config.data.size=75). No weights can be downloaded here, so the
ImageNet and RadImageNet sources are made first by a short pre-training on two
other synthetic domains (ISIC-like colour images, chest X-ray-like images), written
as Keras `_notop.h5` files and converted back like real downloads
(`jaxtransfer.grid.pretraining`). Point config.init at converted checkpoints and set
model.name='resnet50' for the real thing. The class cues are weak on purpose
(`synthetic_options`), so test AUCs land around 70-90 and differ between settings
and folds, and the analysis has AUC gains to relate to CCA (three folds: the
regressions need at least three points). A few minutes on 2 cores.
"""

from configs import default


def get_config(arg=None):
    config = default.for_target("breast", size=32, arg=arg)
    config.data.synthetic = True
    config.data.paper_folds = ""  # a synthetic target: the paper's fold procedure
    config.analysis.image_size = None  # CCA at the training size (32 px)
    config.data.synthetic_options.counts = {"benign": 60, "malignant": 50, "normal": 30}
    # Weak class cues, so that the settings differ in AUC (at full strength every
    # setting scores 100 and the AUC-gain analysis has nothing to relate).
    config.data.synthetic_options.class_signal = 0.15
    config.data.synthetic_options.brightness_jitter = 20.0
    config.data.manual_dir = "runs/demo_data/raw"
    config.data.data_dir = "runs/demo_data/prepared"
    config.model.name = "tiny"
    # The stand-in sources are pre-trained in the grid's own architecture, one
    # folder per model.name (set lazily: --config.model.name=densenet121 moves it).
    sources = "runs/demo_data/sources/" + config.model.get_ref("name")
    config.init.ImageNet = sources + "/ImageNet"
    config.init.RadImageNet = sources + "/RadImageNet"
    config.init.synthetic_domains = {"ImageNet": "isic", "RadImageNet": "chest"}
    config.grid.folds = (1, 2, 3)
    config.train.batch_size = 16
    config.train.eval_batch_size = 32
    config.train.num_epochs = 8
    config.train.patience = 3
    config.train.head_num_epochs = 3
    config.train.head_patience = 2
    config.train.learning_rate = 1e-3
    config.host.reuse_freed_memory = False  # tiny buffers; compile-bound
    return config
