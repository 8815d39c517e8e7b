"""Offline models: the models cache (resolve, prepare), the build recipes, the cross-encoder and random-adapter
builders."""
