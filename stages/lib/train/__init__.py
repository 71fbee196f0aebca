"""The train phase: the trainers (heads on the features, fine-tuning on the images), the choice on validation
labels, each seed's labels."""
