"""Keras optimizers whose per-variable update is one fused TensorFlow op.

Keras 3's ``update_step`` builds ~15 graph ops per variable (casts, the bias
correction powers, the moment updates) and its decoupled weight decay
evaluates the LR schedule again for every variable; for HAT-CNN (424
variables) that is a large part of the step graph the first step traces and
grappler optimises (issue #14, docs/training.md "first step"). The classes
here keep the Keras classes' variables (names, count, order, ``iterations``),
config and checkpoints, and do the same update with the step's scalars
computed once per step and dtype and, per variable:

- weight decay ``var -= var * wd * lr``: ``ResourceApplyGradientDescent``
  (``var -= (wd * lr) * var``; the product is taken in another order, so it
  agrees to float32 rounding, not bit for bit);
- Adam: ``ResourceApplyAdam`` (m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
  var -= m lr sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps), Keras' formula);
- SGD: ``ResourceApplyKerasMomentum`` (m = m mu - lr g; var += m, or with
  Nesterov var += m mu - lr g) or, without momentum, ``ResourceApplyGradientDescent``.

Everything around the update (gradient clipping, accumulation, EMA,
constraints, the tf.distribute path that calls ``update_step`` per replica
inside ``extended.update``) is Keras' own. Where a fused op cannot do the
same update (AMSGrad, sparse ``IndexedSlices`` gradients, variables that are
not float32/float64) the Keras update runs instead.
"""

from __future__ import annotations

import keras
import tensorflow as tf

FUSED_DTYPES = (tf.float32, tf.float64)


def _tf_variable(variable):
    """The tf.Variable under a Keras variable (a replica's component inside
    ``extended.update``: its ``handle`` is that replica's)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


class _StepScalars:
    """The scalars of the update being built, keyed by (learning-rate tensor, dtype).
    A plain object, not a dict attribute: Keras/TF would track a dict as a
    checkpoint dependency of the optimizer."""

    def __init__(self):
        self.entries = {}


class _FusedUpdate:
    """Mixin over a Keras optimizer: folds the decoupled weight decay into
    ``update_step`` and runs ``_fused_update`` there when :meth:`_can_fuse`.
    The subclasses keep the Keras class names, so the default optimizer name
    (``adam_w``, ``sgd``; it prefixes the variable paths) is the same too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._step_scalars = _StepScalars()

    def _can_fuse(self, gradient, variable) -> bool:
        return (not isinstance(gradient, tf.IndexedSlices)
                and tf.as_dtype(variable.dtype) in FUSED_DTYPES)

    def _scalars(self, learning_rate, dtype):
        """The step's scalars in `dtype`, built once per update (per replica:
        each replica passes its own learning-rate tensor)."""
        key = (id(learning_rate), dtype)
        entries = self._step_scalars.entries
        entry = entries.get(key)
        if entry is None:
            lr = tf.cast(learning_rate, dtype)
            scalars = self._make_scalars(lr, dtype)
            if self._decays():
                scalars["decay"] = tf.cast(self.weight_decay, dtype) * lr
            entry = entries[key] = (learning_rate, scalars)  # holds the tensor: its id stays unique
        return entry[1]

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # A new step (an eager LR variable is the same object every step). Under
        # MirroredStrategy each replica thread resets it: at worst a rebuild.
        self._step_scalars.entries = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars.entries = {}

    def _decays(self) -> bool:
        """Weight decay is on: None and 0 both mean off (a decay by 0 changes
        nothing, so it adds no op per variable)."""
        return bool(self.weight_decay)

    def _apply_weight_decay(self, variables):
        """Done per variable in :meth:`update_step` (same value: the schedule is
        read at the same iteration), so the schedule is evaluated once."""

    def update_step(self, gradient, variable, learning_rate):
        var = _tf_variable(variable)
        dtype = tf.as_dtype(var.dtype)
        decays = self._decays() and self._use_weight_decay(var)
        if not self._can_fuse(gradient, var):  # Keras' own decay and update
            if decays:
                lr = tf.cast(learning_rate, dtype)
                var.assign_sub(var * tf.cast(self.weight_decay, dtype) * lr)
            return super().update_step(gradient, variable, learning_rate)
        scalars = self._scalars(learning_rate, dtype)
        if decays:
            tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=scalars["decay"], delta=var.value())
        self._fused_update(tf.cast(gradient, dtype), var, scalars)


class AdamW(_FusedUpdate, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with the fused update (module docstring)."""

    def _can_fuse(self, gradient, variable) -> bool:
        return not self.amsgrad and super()._can_fuse(gradient, variable)

    def _make_scalars(self, lr, dtype):
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        return dict(lr=lr, beta_1=beta_1, beta_2=beta_2, beta_1_power=tf.pow(beta_1, step),
                    beta_2_power=tf.pow(beta_2, step), epsilon=tf.cast(self.epsilon, dtype))

    def _fused_update(self, gradient, var, s):
        index = self._get_variable_index(var)
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=_tf_variable(self._momentums[index]).handle,
            v=_tf_variable(self._velocities[index]).handle, beta1_power=s["beta_1_power"],
            beta2_power=s["beta_2_power"], lr=s["lr"], beta1=s["beta_1"], beta2=s["beta_2"],
            epsilon=s["epsilon"], grad=gradient)


class SGD(_FusedUpdate, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with the fused update (module docstring)."""

    def _make_scalars(self, lr, dtype):
        return dict(lr=lr, momentum=tf.cast(self.momentum, dtype))

    def _fused_update(self, gradient, var, s):
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=s["lr"], delta=gradient)
            return
        accum = _tf_variable(self.momentums[self._get_variable_index(var)])
        tf.raw_ops.ResourceApplyKerasMomentum(var=var.handle, accum=accum.handle, lr=s["lr"], grad=gradient,
                                              momentum=s["momentum"], use_nesterov=bool(self.nesterov))
