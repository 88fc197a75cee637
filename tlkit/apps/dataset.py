"""Finding the classes and splits of an image folder, with errors a person can act on."""
import os

from tlkit.augment.folders import IMAGE_EXTENSIONS, image_files, subfolders


class DataFolderError(ValueError):
    """The image folder can't be used as it is; the message says why and what to do."""


def _subdirs(path):
    try:
        return subfolders(path)
    except PermissionError:
        raise DataFolderError(f"Can't read folder {path}: permission denied.") from None


def _count_images(path):
    return len(image_files(path, follow_links=True))


def class_folders(path, role="data"):
    """Sorted class names under ``path``, checked: at least two classes, each with images."""
    if not os.path.isdir(path):
        raise DataFolderError(f"{path} is not a folder. Give a folder with one subfolder per class.")
    classes = _subdirs(path)
    if not classes:
        raise DataFolderError(
            f"The {role} folder {path} has no class subfolders. Put the images of each class in its own "
            "subfolder, e.g. DATA/cats/*.jpg and DATA/dogs/*.jpg.")
    if len(classes) < 2:
        raise DataFolderError(
            f"The {role} folder {path} has only one class ('{classes[0]}'): a classifier needs at least two "
            "class subfolders.")
    empty = [c for c in classes if _count_images(os.path.join(path, c)) == 0]
    if empty:
        raise DataFolderError(
            f"Class folder(s) {', '.join(repr(c) for c in empty)} in {path} hold no images "
            f"({', '.join('.' + e for e in IMAGE_EXTENSIONS)}). Add images or remove the folder(s).")
    return classes


def find_layout(data_dir):
    """{"train": path, "val": path or None, "classes": [...]} for DATA/class/* or DATA/{train,val}/class/*."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DataFolderError(f"No folder at {data_dir}.")
    subdirs = _subdirs(data_dir)
    if "train" in subdirs:
        train = os.path.join(data_dir, "train")
        val_name = "val" if "val" in subdirs else ("validation" if "validation" in subdirs else None)
        val = os.path.join(data_dir, val_name) if val_name else None
        classes = class_folders(train, "training")
        if val is not None:
            val_classes = class_folders(val, "validation")
            if val_classes != classes:
                raise DataFolderError(
                    f"The training classes {classes} and validation classes {val_classes} differ: both folders "
                    "need the same class subfolders.")
        return {"train": train, "val": val, "classes": classes}
    if not subdirs and _count_images(data_dir) == 0:
        raise DataFolderError(f"The folder {data_dir} is empty: put one subfolder of images per class in it.")
    return {"train": data_dir, "val": None, "classes": class_folders(data_dir)}
