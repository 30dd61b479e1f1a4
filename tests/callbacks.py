"""Keras callbacks the resume tests share: a simulated preemption and an epoch recorder."""

import keras


class Interrupt(keras.callbacks.Callback):
  """Raises after `after` training batches, as a preemption would."""

  def __init__(self, after):
    super().__init__()
    self.after, self.seen = after, 0

  def on_train_batch_end(self, batch, logs=None):
    self.seen += 1
    if self.seen == self.after:
      raise KeyboardInterrupt("simulated preemption")


class EpochRecorder(keras.callbacks.Callback):
  """The epochs `fit` started, in order (a resumed run starts after the last finished one)."""

  def __init__(self):
    super().__init__()
    self.epochs = []

  def on_epoch_begin(self, epoch, logs=None):
    self.epochs.append(epoch)
