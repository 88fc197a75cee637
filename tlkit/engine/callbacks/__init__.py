"""Callbacks for fit/evaluate/predict (Keras names and semantics)."""
from tlkit.engine.callbacks.backup_and_restore import BackupAndRestore
from tlkit.engine.callbacks.callback import Callback, CallbackList
from tlkit.engine.callbacks.csv_logger import CSVLogger
from tlkit.engine.callbacks.early_stopping import EarlyStopping
from tlkit.engine.callbacks.gradient_monitor import GradientMonitor, GradientWarning
from tlkit.engine.callbacks.history import History
from tlkit.engine.callbacks.lambda_callback import LambdaCallback
from tlkit.engine.callbacks.learning_rate_scheduler import LearningRateScheduler
from tlkit.engine.callbacks.model_checkpoint import ModelCheckpoint
from tlkit.engine.callbacks.progbar_logger import ProgbarLogger
from tlkit.engine.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from tlkit.engine.callbacks.resource_monitor import ResourceMonitor
from tlkit.engine.callbacks.tensorboard import TensorBoard
from tlkit.engine.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "BackupAndRestore", "CSVLogger", "EarlyStopping",
           "GradientMonitor", "GradientWarning", "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint",
           "ReduceLROnPlateau", "ResourceMonitor", "TensorBoard", "TerminateOnNaN"]
