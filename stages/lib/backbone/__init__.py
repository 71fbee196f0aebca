"""The backbone phase (embed; fine-tuning starts from it): ResNet50, the Keras backend, the devices, the features."""
