"""Choosing a tf.distribute strategy, and knowing which worker writes the run's files."""

import tensorflow as tf

from core.cli import UserError


def split_cpu(n: int) -> None:
    """Present the CPU as `n` logical devices; must run before TensorFlow touches a device."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise UserError("--logical-cpus must be set before TensorFlow starts; run it from the command line.")


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        # NCCL all-reduce exists only between GPUs.
        ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)
    if name == "multi-worker":
        import os

        from training.cluster import tf_config_from_job
        derived = tf_config_from_job()  # a pod of training.cluster's Indexed Job: from its completion index
        if derived:
            os.environ["TF_CONFIG"] = derived
        return tf.distribute.MultiWorkerMirroredStrategy()  # the cluster comes from TF_CONFIG
    raise UserError(f"unknown strategy {name!r}; use default, mirrored or multi-worker.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one worker that writes checkpoints, samples and logs (every single-worker run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())
