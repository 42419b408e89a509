"""What the aidaptivcache-finetune chart (values.yaml 0.1.4) writes to the trainer's files by default."""

# The chart's values.yaml (0.1.4) defaults, as AIDAPTIV.md lists them, in the trainer's own keys.
CHART_EXP_CONFIG = {
    "process_settings": {
        "num_gpus": 1,
        "specify_gpus": None,
        "master_port": 8299,
        "multi_node_settings": {"enable": False, "master_addr": "127.0.0.1"},
    },
    "run_settings": {
        "task_type": "text-generation",
        "task_mode": "train",
        "per_device_train_batch_size": 4,
        "per_update_total_batch_size": 16,
        "num_train_epochs": 1,
        "max_iter": 12,
        "max_seq_len": 2048,
        "triton": True,
        "weight_file_format": None,
        "from_config": False,
        "precision_mode": 1,
        "enable_save_optimizer_state": False,
        "model_saver": {
            "max_num_of_saved_model_on_epoch_end": -1,
            "enable_save_model_on_iteration": False,
            "max_num_of_saved_model_on_iteration": 2,
            "num_of_iteration_to_save_model": 2,
        },
        "lr_scheduler": {"mode": 1, "learning_rate": 7e-6},
        "optimizer": {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.01},
        "early_stop": {"enable": False, "min_delta": 0.01, "patience": 2, "verbose": False},
        "lora": {
            "enable_lora": False,
            "lora_rank": 8,
            "lora_alpha": 16,
            "lora_task_type": "CAUSAL_LM",
            "lora_target_modules": None,
        },
    },
}
CHART_ENV_CONFIG = {
    "path_settings": {
        "lora": {"lora_weight": "", "lora_optimizer": "", "lora_output_dir": ""},
        "model_name_or_path": "/mnt/data/models/TinyLlama-1.1B-Chat-v1.0",
        "multi_node_env_path": None,
        "optimizer_path": "",
        "train_data_path": ["/config/train_data/QA_dataset_config.yaml"],
        "val_data_path": None,
        "nvme_path": "/mnt/nvme0",
        "output_dir": "/mnt/data/output",
        "log_name": "output.log",
    }
}

# The dataset config of the chart's default trainDataConfig, parsed.
CHART_DATASETS = {
    "instruction-dataset": {
        "data_path": "HuggingFaceH4/instruction-dataset",
        "strategy": "QA",
        "system_prompt": "A chat between a curious user and an artificial intelligence assistant.",
        "user_prompt": "{question}",
        "question_key": "prompt",
        "answer_key": "completion",
        "exp_type": "train",
        "label_key": "completion",
    }
}
