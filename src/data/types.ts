/** Task datasets (SCIENCE.md §3c, §4): multiple-choice items or labelled texts. */

export interface ChoiceExample {
  id: number;
  prompt: string;
  choices: string[];
  /** Index of the correct choice. */
  answer: number;
}

export interface ClassificationExample {
  id: number;
  text: string;
  /** Class id 0..numClasses−1. */
  label: number;
}

export type TaskDataset =
  | { name: string; kind: 'choice'; examples: ChoiceExample[] }
  | { name: string; kind: 'classification'; examples: ClassificationExample[]; numClasses: number; labelNames?: string[] };

/** A labelled-text task: what the NDR pipeline fine-tunes and splits (SCIENCE.md §4). */
export type ClassificationTask = Extract<TaskDataset, { kind: 'classification' }>;
